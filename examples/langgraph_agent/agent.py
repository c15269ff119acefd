"""An existing LangGraph agent, wrapped as the ACE Generator with :func:`ace.loop.agents.wrap_graph`.

The agent is an ordinary compiled ``StateGraph`` that knows nothing about ACE: a ``plan`` node asks the model for
an arithmetic expression, a ``calculate`` node runs the calculator tool, and an ``answer`` node writes the final
message. ACE hands it the playbook as a system message (the shape of LangGraph's prebuilt agents) and reads the
answer from the final state; the bullets it cites come from its own ``bullet_ids`` or, failing that, from the ids
it mentions. ``ace run examples/langgraph_agent/ace.toml`` runs it under the ACE loop.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from ace.llm import LLM, Message
from ace.loop import Generator
from ace.loop.agents import wrap_graph
from examples.tool_agent.calculator import ToolError, calculate


class Plan(BaseModel):
    reasoning: str
    bullet_ids: list[str]
    expression: str


class AgentState(TypedDict, total=False):
    messages: Annotated[list[tuple[str, str]], operator.add]
    plan: dict[str, Any]
    result: str
    final_answer: str
    reasoning: str
    bullet_ids: list[str]


def make_graph(llm: LLM) -> Any:
    """The agent as it would exist without ACE: a compiled LangGraph graph over a ``messages`` state."""

    def plan(state: AgentState) -> AgentState:
        messages = [Message(role, text) for role, text in state["messages"]]
        messages.append(Message("user", "Answer with one arithmetic expression that a calculator can evaluate."))
        p: Plan = llm.call(messages, output=Plan, role="generator").parsed  # type: ignore[assignment]
        return {"plan": p.model_dump(), "messages": [("assistant", f"{p.reasoning}\nexpression: {p.expression}")]}

    def calc(state: AgentState) -> AgentState:
        try:
            result = f"{calculate(state['plan']['expression']):.2f}"
        except ToolError as e:
            result = f"calculator error: {e}"
        return {"result": result, "messages": [("tool", result)]}

    def answer(state: AgentState) -> AgentState:
        p = state["plan"]
        return {
            "final_answer": state["result"],
            "reasoning": p["reasoning"],
            "bullet_ids": p["bullet_ids"],
            "messages": [("assistant", state["result"])],
        }

    g = StateGraph(AgentState)
    g.add_node("plan", plan)
    g.add_node("calculate", calc)
    g.add_node("answer", answer)
    g.add_edge(START, "plan")
    g.add_edge("plan", "calculate")
    g.add_edge("calculate", "answer")
    g.add_edge("answer", END)
    return g.compile()


def build(llm: LLM, budget: int | None = 2000) -> Generator:
    return wrap_graph(make_graph(llm), budget=budget)
