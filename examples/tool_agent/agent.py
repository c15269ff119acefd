"""A tool-using agent as the ACE Generator: the model writes an arithmetic expression, a calculator evaluates it.

The model (any provider) is asked for ``{reasoning, bullet_ids, expression}``; :func:`calculator.calculate`
evaluates the expression safely, and its value, rounded to two decimals, is the final answer. A refused
expression is not a crash: the agent answers with the calculator's error, the evaluator scores it wrong, and the
reflector sees why. ``ace run examples/tool_agent/ace.toml`` runs it; ``build`` is the hook ``ace run`` calls.
"""

from __future__ import annotations

from calculator import ToolError, calculate
from pydantic import BaseModel

from ace.llm import LLM, Message
from ace.loop import Generator
from ace.loop.agents import playbook_prompt
from ace.loop.roles import GeneratorOutput
from ace.playbook import Playbook
from ace.tasks import Task

INSTRUCTIONS = (
    "You solve finance questions with a calculator. Write one arithmetic expression (numbers, + - * / ** and "
    "parentheses) whose value answers the question; the calculator evaluates it. Cite the playbook bullets you "
    "used in bullet_ids."
)


class Plan(BaseModel):
    reasoning: str
    bullet_ids: list[str]
    expression: str


def build(llm: LLM, budget: int | None = 2000) -> Generator:
    def agent(task: Task, playbook: Playbook, hint: str | None) -> GeneratorOutput:
        messages = [
            Message("system", INSTRUCTIONS, cache=True),
            Message("system", playbook_prompt(playbook, budget, hint), cache=True),
            Message("user", f"QUESTION:\n{task.input}"),
        ]
        plan: Plan = llm.call(messages, output=Plan, role="generator").parsed  # type: ignore[assignment]
        try:
            value = calculate(plan.expression)
            answer, note = f"{value:.2f}", f"calculator: {plan.expression} = {value:.6g}"
        except ToolError as e:
            answer, note = f"calculator error: {e}", f"calculator refused {plan.expression!r}: {e}"
        ids = [i for i in plan.bullet_ids if i in playbook]
        return GeneratorOutput(reasoning=f"{plan.reasoning}\n{note}", bullet_ids=ids, final_answer=answer)

    return agent
