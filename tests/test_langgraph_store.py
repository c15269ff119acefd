"""ACE inside LangGraph (ace.integrations.langgraph): the BaseStore over a real SQLite store, and a LangGraph agent
that runs on the real local model with the playbook injected, reports its outcome through the store, and leaves a
new playbook version once a worker has learned from it."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Annotated, Any, NotRequired

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.store.base import BaseStore, ListNamespacesOp, MatchCondition

from ace.config import LoopConfig
from ace.integrations.langgraph import (
    PLAYBOOK_MESSAGE_ID,
    AceStore,
    StoreUsageError,
    episode_log,
    playbook_hook,
    playbook_node,
)
from ace.llm import LLM, Message, Sampling
from ace.playbook import parse_ace
from ace.service.queue import EpisodeQueue
from ace.service.worker import Worker
from ace.store import PlaybookStore, StaleVersionError

PB = parse_ace(
    "## STRATEGIES AND HARD RULES\n"
    "[shr-00001] Always read the API doc before calling an API.\n"
    "[shr-00002] Invoices are paged: fetch every page before summing.\n"
)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = PlaybookStore(f"sqlite:///{tmp_path / 'lg.db'}")
    s.create("agent", PB, namespace="team-a")
    yield s
    s.close()


def test_bullets_are_items_and_one_batch_of_writes_is_one_version(store: PlaybookStore) -> None:
    lg = AceStore(store)
    ns = ("team-a", "playbooks", "agent")
    item = lg.get(ns, "shr-00002")
    assert item is not None and item.value["content"].startswith("Invoices are paged") and item.key == "shr-00002"
    assert lg.get(ns, "shr-99999") is None and lg.get(("team-a", "playbooks", "nope"), "x") is None
    lg.batch(
        [
            lg_put(ns, "shr-00001", {"content": "Read the API doc, then call the API."}),  # an id: UPDATE
            lg_put(ns, "new-memory-1", {"content": "Dates in the ledger are ISO 8601.", "section": "FACTS"}),  # ADD
            lg_put(ns, "shr-00002", None),  # delete: REMOVE
        ]
    )
    head = store.head("agent", namespace="team-a")
    assert head.version == 2 and head.n_bullets == 2 and head.author == "langgraph"  # one delta, one version
    assert [op.type for op in head.delta.operations] == ["UPDATE", "ADD", "REMOVE"]  # type: ignore[union-attr]
    found = lg.search(ns, query="which date format does the ledger use")
    assert found[0].value["content"] == "Dates in the ledger are ISO 8601." and found[0].score == 1.0
    assert {f.key for f in found} == {"shr-00001", found[0].key} and (found[-1].score or 0) < 1.0
    assert [i.key for i in lg.search(ns, filter={"section": "FACTS"})] == [found[0].key]
    assert lg.search(ns, filter={"helpful": {"$gte": 1}}) == []
    with pytest.raises(StoreUsageError, match="operator"):
        lg.search(ns, filter={"helpful": {"$regex": "."}})
    playbook = lg.get(("team-a", "playbooks"), "agent")
    assert playbook is not None and playbook.value["version"] == 2 and "ISO 8601" in playbook.value["text"]


def lg_put(namespace: tuple[str, ...], key: str, value: dict[str, Any] | None) -> Any:
    from langgraph.store.base import PutOp

    return PutOp(namespace, key, value)


def test_playbooks_episodes_and_namespaces(store: PlaybookStore) -> None:
    lg = AceStore(store)
    lg.put(("team-a", "playbooks"), "imported", {"text": "## RULES\n[r-00001] Check the page count.\n"})
    assert lg.get(("team-a", "playbooks"), "imported").value["bullets"] == 1  # type: ignore[union-attr]
    add = {"operations": [{"type": "ADD", "section": "RULES", "content": "Sum every page."}], "expected_version": 1}
    lg.put(("team-a", "playbooks"), "imported", add)
    with pytest.raises(StaleVersionError):
        lg.put(("team-a", "playbooks"), "imported", add)  # version 1 is no longer the head
    with pytest.raises(StoreUsageError, match="history is kept"):
        lg.delete(("team-a", "playbooks"), "imported")
    assert store.head_version("imported", namespace="team-a") == 2
    log = episode_log([HumanMessage("Sum the invoices."), AIMessage("41")], {"success": False, "message": "42"})
    lg.put(("team-a", "episodes"), "ep-1", {"playbook": "agent", **log})
    sent = lg.get(("team-a", "episodes"), "ep-1")
    assert sent is not None and sent.value["status"] == "queued" and sent.value["playbook"] == "agent"
    assert [i.key for i in lg.search(("team-a", "episodes"))] == ["ep-1"]
    with pytest.raises(StoreUsageError, match="names the playbook"):
        lg.put(("team-a", "episodes"), "ep-2", log)
    assert lg.search(("team-a", "facts")) == []
    names = lg.list_namespaces(prefix=("team-a", "playbooks"))
    assert names == [("team-a", "playbooks"), ("team-a", "playbooks", "agent"), ("team-a", "playbooks", "imported")]
    assert lg.list_namespaces(max_depth=1) == [("team-a",)]
    assert ("team-a", "facts") in lg.list_namespaces(suffix=("facts",))
    assert lg.batch([]) == [] and lg.list_namespaces(prefix=("zz",)) == []
    assert lg.batch([ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("*", "episodes")),))]) == [
        [("team-a", "episodes")]
    ]
    # whatever crosses a name or a confinement is refused before it reaches the store
    confined = AceStore(store, namespaces=["team-b"])
    with pytest.raises(StoreUsageError, match="not one this store may use"):
        confined.get(("team-a", "playbooks"), "agent")
    with pytest.raises(StoreUsageError, match="not one of ACE's"):
        lg.get(("team-a", "documents"), "x")
    with pytest.raises(Exception, match="namespace"):
        lg.get(("../etc", "playbooks"), "agent")


def test_the_hook_and_the_node_put_the_playbook_first(store: PlaybookStore) -> None:
    messages = [HumanMessage("Sum the invoices.", id="h1")]
    fed = playbook_hook(store, "agent", namespace="team-a")({"messages": messages})["llm_input_messages"]
    assert isinstance(fed[0], SystemMessage) and "[shr-00002]" in fed[0].content and fed[1:] == messages
    again = playbook_hook(store, "agent", namespace="team-a")({"messages": fed})["llm_input_messages"]
    assert [m.id for m in again] == [PLAYBOOK_MESSAGE_ID, "h1"]  # replaced, not stacked


class AgentState(MessagesState):
    target: str
    outcome: NotRequired[dict[str, Any]]  # set by the judge node
    steps: Annotated[list[str], operator.add]


@pytest.mark.slow
@pytest.mark.model
def test_a_langgraph_agent_on_the_local_model_learns_through_the_store(store: PlaybookStore, tmp_path: Path) -> None:
    llm = LLM("local", sampling=Sampling(max_tokens=64))

    def agent(state: AgentState) -> dict[str, Any]:
        prompt = [Message("system" if isinstance(m, SystemMessage) else "user", str(m.content)) for m in
                  state["messages"]]  # fmt: skip
        answer = llm.call(prompt, role="generator").text
        return {"messages": [AIMessage(answer)], "steps": ["agent"]}

    def judge(state: AgentState) -> dict[str, Any]:
        said = str(state["messages"][-1].content)
        ok = state["target"].casefold() in said.casefold()
        return {"outcome": {"success": ok, "message": f"the answer is {state['target']}"}, "steps": ["judge"]}

    def report(state: AgentState, *, store: BaseStore) -> dict[str, Any]:
        log = episode_log(state["messages"], state["outcome"], target=state["target"])
        store.put(("team-a", "episodes"), "lg-run-1", {"playbook": "agent", **log})
        return {"steps": ["report"]}

    graph = StateGraph(AgentState)
    # langgraph's stubs want a node typed for the graph's own state; playbook_node takes any state with messages
    graph.add_node("playbook", playbook_node(store, "agent", namespace="team-a"))  # type: ignore[call-overload]
    graph.add_node("agent", agent)
    graph.add_node("judge", judge)
    graph.add_node("report", report)
    graph.add_edge(START, "playbook")
    graph.add_edge("playbook", "agent")
    graph.add_edge("agent", "judge")
    graph.add_edge("judge", "report")
    graph.add_edge("report", END)
    lg = AceStore(store)
    app = graph.compile(store=lg)
    question = "Which ledger code do refunds from the Oslo office use? Answer with the code."
    # a code nothing could guess: the run fails, so there is something to learn (no skip when the model is lucky)
    start: AgentState = {"messages": [HumanMessage(question)], "target": "LC-4471", "steps": []}
    final = app.invoke(start)
    assert final["steps"] == ["agent", "judge", "report"]
    assert final["messages"][0].id == PLAYBOOK_MESSAGE_ID and "[shr-00001]" in final["messages"][0].content
    sent = lg.get(("team-a", "episodes"), "lg-run-1")
    assert sent is not None and sent.value["status"] == "queued"
    # a worker learns from the reported run: the playbook gets a new version
    queue = EpisodeQueue(store)
    worker = Worker(store, queue, llm=lambda: llm, workdir=tmp_path / "runs", config=LoopConfig(curation="facts"))
    done = worker.run_once()
    assert done is not None and done.status == "done", done
    assert final["outcome"]["success"] is False
    assert done.committed and done.version == 2 and store.head_version("agent", namespace="team-a") == 2
    assert "LC-4471" in lg.get(("team-a", "playbooks"), "agent").value["text"]  # type: ignore[union-attr]
