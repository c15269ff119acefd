"""ACE inside other agent frameworks: :mod:`ace.integrations.langgraph` (a LangGraph ``BaseStore`` over the store
and memory, a node and a hook that put the playbook into a graph's messages, and one that reports the outcome) and
:mod:`ace.integrations.openai_agents` (run hooks for the OpenAI Agents SDK; the ``agents`` extra)."""
