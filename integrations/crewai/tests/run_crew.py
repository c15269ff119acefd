"""Runs in the CrewAI environment (ACE's tests/test_crewai.py starts it with the venv's python): one agent, one task,
a crew with ACE attached, against a real ``ace serve``; prints what happened as one JSON line after ``RESULT``.

``python run_crew.py CONFIG_JSON`` where the config names ``url``, ``token``, ``namespace``, ``playbook`` and
``model``: ``"scripted"`` (a CrewAI ``BaseLLM`` that answers from a script: it stands in for the model provider, and
records the prompts it was given) or ``"openai"`` (CrewAI's own ``LLM`` on an OpenAI-compatible server at
``base_url`` serving ``alias``: the local model). ``runs`` lists the kickoffs: ``{"inputs": {...}, "fail": bool,
"send": bool, "report": outcome}``."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import httpx
from ace_crewai import AceCrewError, AcePlaybook
from crewai import LLM, Agent, Crew, Task
from crewai.crews.crew_output import CrewOutput
from crewai.llms.base_llm import BaseLLM
from pydantic import Field


class ScriptedLLM(BaseLLM):
    """Answers each call with the next reply (``FAIL``: the provider is away); keeps the messages it was sent."""

    replies: list[str] = Field(default_factory=list)
    seen: list[Any] = Field(default_factory=list)

    def call(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> str:
        self.seen.append(messages if isinstance(messages, str) else [dict(m) for m in messages])
        reply = self.replies.pop(0)
        if reply == "FAIL":
            raise ConnectionError("the model provider is away")
        return reply


def main(config: dict[str, Any]) -> dict[str, Any]:
    sent: list[str] = []
    client = httpx.Client(timeout=30, event_hooks={"request": [lambda r: sent.append(f"{r.method} {r.url.path}")]})
    llm: BaseLLM
    if config.get("model", "scripted") == "scripted":
        llm = ScriptedLLM(model="scripted", replies=list(config["replies"]))
    else:
        llm = LLM(model=f"openai/{config['alias']}", base_url=config["base_url"], api_key="not-needed",
                  temperature=0.0, max_tokens=config.get("max_tokens", 60),
                  context_window_size=config.get("context_window", 2048))  # fmt: skip
    outcome = (lambda out: {"success": config["expect"] in out.raw}) if config.get("expect") else None
    ace = AcePlaybook(config["url"], config["playbook"], namespace=config["namespace"], token=config["token"],
                      outcome=outcome, task=config.get("task"), client=client)  # fmt: skip
    agent = Agent(role="Support agent", goal="Answer customers' billing questions in one sentence.",
                  backstory=config.get("backstory", "You work for a small web shop."), llm=llm,
                  max_iter=2, max_retry_limit=0, verbose=False)  # fmt: skip
    task = Task(description=config["description"], expected_output="One short sentence.", agent=agent)
    crew = ace.attach(Crew(agents=[agent], tasks=[task], verbose=False))
    runs = []
    for run in config["runs"]:
        ace.send = run.get("send", True)
        before, requests = ace.last_episode, len(sent)
        got: dict[str, Any] = {}
        try:
            with warnings.catch_warnings(record=True) as warned:
                warnings.simplefilter("always")
                result = crew.kickoff(inputs=run.get("inputs"))
            assert isinstance(result, CrewOutput)  # not streamed
            got["output"] = result.raw
            got["warnings"] = [str(w.message) for w in warned if "ACE" in str(w.message)]
        except Exception as e:  # a failed run: what the crew raised
            got["error"] = f"{type(e).__name__}: {e}"
        got["episode"] = ace.last_episode if ace.last_episode is not before else None  # what the kickoff sent
        if "report" in run:
            try:
                got["reported"] = ace.report(run["report"])
            except AceCrewError as e:
                got["report_error"] = str(e)
        got["requests"] = sent[requests:]
        got["read"] = {"version": ace.last_read.version, "text": ace.last_read.text} if ace.last_read else None
        got["last_run"] = ace.last_run
        got["backstory"] = agent.backstory
        runs.append(got)
    seen = llm.seen if isinstance(llm, ScriptedLLM) else []
    found: dict[str, Any] = {"runs": runs, "seen": seen}
    if config.get("probe_bad_token"):  # a token ACE does not know: a clear error, before any crew runs
        try:
            AcePlaybook(config["url"], config["playbook"], namespace=config["namespace"], token="x" * 24).read()
            found["bad_token"] = None
        except AceCrewError as e:
            found["bad_token"] = str(e)
    return found


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(json.loads(sys.argv[1])), default=str))
