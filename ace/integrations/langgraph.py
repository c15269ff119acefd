"""ACE inside LangGraph: a :class:`~langgraph.store.base.BaseStore` over the playbook store and memory, and the
pieces that put the playbook into a graph's messages and send the outcome back to learn from.

**The store.** ``graph.compile(store=AceStore(store))`` gives every node (``runtime.store``) and LangMem-style code
ACE's playbooks and memory under namespaces whose first label is the ACE namespace:

==============================  ==============================================================================
namespace                        items
==============================  ==============================================================================
``(ns, "playbooks")``            one per playbook, key = its name: ``{"name", "version", "bullets", "text"}``
                                 (``text``: the prompt rendering under ``budget`` of its ``serving`` channel, what
                                 agents read; the bullets below are the head, where writes go). ``put`` with ``{"text":
                                 "<playbook file>"}`` imports a new playbook; with ``{"operations": [...]}`` (a
                                 delta, optionally ``"expected_version"``) commits it.
``(ns, "playbooks", name)``      one per bullet, key = its id: ``{"content", "section", "helpful", "harmful"}``.
                                 ``put`` updates the bullet with that id, or adds a new one (the playbook gives it
                                 its id, in ``section`` or the first section); ``delete`` removes it. Every write
                                 of one batch to one playbook is one delta: one new version. ``search(query=...)``
                                 ranks bullets by the words they share with the query.
``(ns, "episodes")``             one per sent episode, key = its id: ``put`` queues an episode (the format of
                                 ``ace learn``) for a worker; ``get`` is its status; ``search(query=...)`` asks
                                 the episodic tier (when given one) for similar past episodes.
``(ns, "facts")``                the knowledge graph's current facts, key = the fact's id; ``filter`` on
                                 ``subject`` / ``relation``.
==============================  ==============================================================================

Nothing is ever erased: deleting a playbook is refused (roll back instead), and every write is a version. Reads in
a batch see the state before its writes, as in LangGraph's own stores. Filters support equality and ``$eq``,
``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``.

**The node and the hook.** :func:`playbook_node` returns a node that puts the rendered playbook first in
``state["messages"]`` (as a system message with a fixed id, replaced on every pass); :func:`playbook_hook` is the
same as a ``pre_model_hook`` of ``create_react_agent`` (``llm_input_messages``: nothing is added to the state).
Both read with the latest user message as the query (``query=False``: not): half the budget then holds the bullets
most relevant to the task at hand (:mod:`ace.playbook.query`).
:func:`report_node` / :func:`report_outcome` send the finished conversation and its outcome as an episode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    RemoveMessage,
    SystemMessage,
    convert_to_openai_messages,
)
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from ace.errors import AceError
from ace.names import check_name
from ace.playbook import Delta, render
from ace.playbook.delta import AddOp, RemoveOp, UpdateOp
from ace.playbook.focus import relevant
from ace.playbook.render import Layout
from ace.service.auth import Grant
from ace.service.core import MAX_QUERY_CHARS, PROMPT_BUDGET, PROMPT_LAYOUT, Service, service_of
from ace.service.queue import Episode, EpisodeQueue
from ace.store import SERVING, PlaybookStore, VersionInfo

PLAYBOOK_MESSAGE_ID = "ace-playbook"
DEFAULT_SECTION = "STRATEGIES AND HARD RULES"


class StoreUsageError(AceError):
    """A store operation ACE cannot do (an unknown namespace layout, erasing a playbook)."""


class AceStore(BaseStore):
    """LangGraph's store interface over ACE's store, episode queue and memory (see the module doc)."""

    supports_ttl = False

    def __init__(
        self,
        store: PlaybookStore | Service,
        *,
        namespaces: Iterable[str] | None = None,
        budget: int | None = PROMPT_BUDGET,
        layout: Layout = PROMPT_LAYOUT,
        queue: EpisodeQueue | None = None,
        episodes: Callable[[str], Any] | None = None,
        author: str = "langgraph",
    ) -> None:
        self.service = service_of(store, queue=queue, episodes=episodes)
        self.store = self.service.store
        names = None if namespaces is None else [check_name(n, "namespace") for n in namespaces]
        self.grant = Grant.local(author, names)
        self.budget, self.layout = budget, layout

    # -- the BaseStore interface --------------------------------------------------------------------------
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        results: list[Result] = [None] * len(ops)
        writes: dict[tuple[str, str], list[tuple[int, PutOp]]] = {}
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                results[i] = self._get(op)
            elif isinstance(op, SearchOp):
                results[i] = self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = self._namespaces(op)
            elif isinstance(op, PutOp):
                kind = self._where(op.namespace)
                if kind[1] == "bullets":
                    writes.setdefault((kind[0], kind[2]), []).append((i, op))
                else:
                    self._put(op)
            else:  # pragma: no cover - LangGraph has no other op
                raise StoreUsageError(f"unknown store operation {type(op).__name__}")
        for (ns, name), puts in writes.items():
            self._write_bullets(ns, name, [op for _, op in puts])
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))

    # -- namespaces ---------------------------------------------------------------------------------------
    def _where(self, namespace: tuple[str, ...]) -> tuple[str, str, str]:
        """(ACE namespace, kind, playbook) of a LangGraph namespace; kind is playbooks|bullets|episodes|facts."""
        if len(namespace) < 2:
            raise StoreUsageError(
                f"namespace {namespace!r}: ACE's are (ns, 'playbooks'), (ns, 'playbooks', name), (ns, 'episodes') "
                "and (ns, 'facts')"
            )
        ns = check_name(namespace[0], "namespace")
        if not self.grant.allows(ns, "read"):
            raise StoreUsageError(f"namespace {ns!r} is not one this store may use")
        match namespace[1:]:
            case ("playbooks",):
                return ns, "playbooks", ""
            case ("playbooks", name):
                return ns, "bullets", check_name(name, "playbook")
            case ("episodes",):
                return ns, "episodes", ""
            case ("facts",):
                return ns, "facts", ""
        raise StoreUsageError(f"namespace {namespace!r} is not one of ACE's (see ace.integrations.langgraph)")

    def _all_namespaces(self) -> list[tuple[str, ...]]:
        found: list[tuple[str, ...]] = []
        names: dict[str, list[str]] = {}
        for p in self.service.catalog(self.grant):
            names.setdefault(p.namespace, []).append(p.name)
        listed = self.grant.namespaces
        for ns in sorted(names if "*" in listed else listed):
            found.append((ns, "playbooks"))
            found += [(ns, "playbooks", name) for name in sorted(names.get(ns, []))]
            found += [(ns, "episodes"), (ns, "facts")]
        return found

    def _namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        found = [n for n in self._all_namespaces() if all(_matches(c, n) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            found = sorted({n[: op.max_depth] for n in found})
        return found[op.offset : op.offset + op.limit]

    # -- reads --------------------------------------------------------------------------------------------
    def _get(self, op: GetOp) -> Item | None:
        ns, kind, name = self._where(op.namespace)
        if kind == "playbooks":
            if not self._exists(ns, op.key):
                return None
            return self._playbook_item(ns, op.key)
        if kind == "bullets":
            if not self._exists(ns, name):
                return None
            info, pb = self.service.playbook(self.grant, ns, name, channel=SERVING)  # what agents read
            bullet = pb.get(op.key)
            return None if bullet is None else _bullet_item(op.namespace, bullet, info)
        if kind == "episodes":
            found = self.service.find_episode(self.grant, ns, op.key)
            return None if found is None else _episode_item(op.namespace, found)
        facts = [f for f in self._facts(ns) if str(f["id"]) == op.key]
        return _fact_item(op.namespace, facts[0]) if facts else None

    def _exists(self, ns: str, name: str) -> bool:
        return any(p["name"] == name for p in self.service.list_playbooks(self.grant, ns))

    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = op.namespace_prefix
        if len(prefix) < 2:  # a prefix above ACE's layouts: search every playbook's bullets under it
            hits: list[SearchItem] = []
            for n in self._all_namespaces():
                if n[: len(prefix)] == prefix and len(n) == 3:
                    hits += self._search(op._replace(namespace_prefix=n, offset=0, limit=op.offset + op.limit))
            hits.sort(key=lambda h: -(h.score or 0.0))
            return hits[op.offset : op.offset + op.limit]
        ns, kind, name = self._where(prefix)
        items: list[SearchItem]
        if kind == "playbooks":
            listed = self.service.list_playbooks(self.grant, ns)
            items = [_scored(self._playbook_item(ns, p["name"]), None) for p in listed]
        elif kind == "bullets":
            info, pb = self.service.playbook(self.grant, ns, name, channel=SERVING)  # what agents read
            if op.query:  # bullets sharing informative words with the query first, scored by rank; then the rest
                ranked = relevant(pb, op.query, len(pb))
                seen = {b.id for b in ranked}
                count = max(len(ranked), 1)
                items = [_scored(_bullet_item(prefix, b, info), 1.0 - i / count) for i, b in enumerate(ranked)]
                items += [_scored(_bullet_item(prefix, b, info), 0.0) for b in pb if b.id not in seen]
            else:
                items = [_scored(_bullet_item(prefix, b, info), None) for b in pb]
        elif kind == "episodes":
            if op.query and self.service.episodic is not None:
                k = min(op.offset + op.limit, 100)
                similar = self.service.search_episodes(self.grant, ns, op.query, k=k)
                items = [_scored(_memory_item(prefix, h), h.pop("similarity")) for h in similar]
            else:
                queued = self.service.episodes(self.grant, ns, limit=1000)
                items = [_scored(_episode_item(prefix, e), None) for e in queued]
        else:
            items = [_scored(_fact_item(prefix, f), None) for f in self._facts(ns)]
        if op.filter:
            items = [it for it in items if _filtered(it.value, op.filter)]
        return items[op.offset : op.offset + op.limit]

    def _playbook_item(self, ns: str, name: str) -> Item:
        info, pb = self.service.playbook(self.grant, ns, name, channel=SERVING)  # what agents read
        value = {
            "name": name,
            "version": info.version,
            "bullets": len(pb),
            "text": render(pb, budget=self.budget, layout=self.layout),
        }
        return Item(value=value, key=name, namespace=(ns, "playbooks"), created_at=info.created_at,
                    updated_at=info.created_at)  # fmt: skip

    def _facts(self, ns: str) -> list[dict[str, Any]]:
        return self.service.facts(self.grant, ns)

    # -- writes -------------------------------------------------------------------------------------------
    def _put(self, op: PutOp) -> None:
        ns, kind, _ = self._where(op.namespace)
        if kind == "playbooks":
            name = check_name(op.key, "playbook")
            if op.value is None:
                raise StoreUsageError(f"playbook {ns}/{name} is not erased: history is kept (roll back instead)")
            if "operations" in op.value:
                delta = Delta.model_validate({k: v for k, v in op.value.items() if k != "expected_version"})
                expected = op.value.get("expected_version")
                self.service.commit(self.grant, ns, name, delta, expected_version=expected)
            elif "text" in op.value:
                self.service.import_playbook(self.grant, ns, name, str(op.value["text"]), format=op.value.get("format"),
                                             message="import through the LangGraph store")  # fmt: skip
            else:
                raise StoreUsageError("a playbook item is {'text': <playbook file>} or a delta {'operations': [...]}")
        elif kind == "episodes":
            if op.value is None:
                raise StoreUsageError("a sent episode is not erased")
            value = dict(op.value)
            playbook = value.pop("playbook", None)
            if not isinstance(playbook, str):
                raise StoreUsageError("an episode item names the playbook to learn into: {'playbook': name, ...}")
            self.service.submit_episode(self.grant, ns, playbook, {**value, "id": value.get("id", op.key)})
        else:
            raise StoreUsageError("facts are written by the learner (the memory tiers), not through the store")

    def _write_bullets(self, ns: str, name: str, puts: Sequence[PutOp]) -> None:
        self.service.ensure(self.grant, ns, name)
        _, pb = self.service.playbook(self.grant, ns, name)
        ops: list[Any] = []
        for op in puts:
            if op.value is None:
                ops.append(RemoveOp(id=op.key))
                continue
            content = op.value.get("content")
            if not isinstance(content, str) or not content.strip():
                raise StoreUsageError("a bullet item is {'content': str, 'section': str (optional)}")
            if op.key in pb:
                ops.append(UpdateOp(id=op.key, content=content))
            else:
                section = op.value.get("section") or next(iter(pb.sections), DEFAULT_SECTION)
                ops.append(AddOp(section=str(section), content=content))
        delta = Delta(operations=ops, reasoning="written through the LangGraph store")
        self.service.commit(self.grant, ns, name, delta)


# -- items ----------------------------------------------------------------------------------------------------
def _ts(seconds: float) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(seconds, UTC)


def _scored(item: Item, score: float | None) -> SearchItem:
    return SearchItem(item.namespace, item.key, item.value, item.created_at, item.updated_at, score)


def _bullet_item(namespace: tuple[str, ...], b: Any, info: VersionInfo) -> Item:
    value = {"content": b.content, "section": b.section, "helpful": b.helpful, "harmful": b.harmful, "id": b.id}
    return Item(value=value, key=b.id, namespace=namespace, created_at=info.created_at, updated_at=info.created_at)


def _episode_item(namespace: tuple[str, ...], e: Episode) -> Item:
    return Item(value=e.to_dict(), key=e.episode_id, namespace=namespace, created_at=e.created_at,
                updated_at=e.updated_at)  # fmt: skip


def _fact_item(namespace: tuple[str, ...], f: dict[str, Any]) -> Item:
    from datetime import UTC

    now = datetime.now(UTC)
    return Item(value=f, key=str(f["id"]), namespace=namespace, created_at=now, updated_at=now)


def _memory_item(namespace: tuple[str, ...], e: dict[str, Any]) -> Item:
    when = _ts(e["created_at"])
    return Item(value=e, key=e["id"], namespace=namespace, created_at=when, updated_at=when)


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(path) > len(namespace):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[len(namespace) - len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, part, strict=True))


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
}


def _filtered(value: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    for key, want in filter.items():
        have = value.get(key)
        if isinstance(want, Mapping) and want and all(str(k).startswith("$") for k in want):
            for op, arg in want.items():
                if op not in _OPS:
                    raise StoreUsageError(f"unknown filter operator {op!r}; use {', '.join(_OPS)}")
                try:
                    if not _OPS[op](have, arg):
                        return False
                except TypeError:
                    return False
        elif have != want:
            return False
    return True


# -- the playbook in a graph's messages -------------------------------------------------------------------------
def playbook_text(
    store: PlaybookStore | Service, playbook: str, *, namespace: str = "default", budget: int | None = PROMPT_BUDGET,
    layout: Layout = PROMPT_LAYOUT, channel: str | None = None, query: str | None = None,
) -> str:  # fmt: skip
    """The system prompt that carries the playbook (:meth:`~ace.service.core.Service.prompt`: a line naming it, its
    version and how to use it, then its bullets under ``budget``; with ``query``, half of it holds the bullets most
    relevant to the query), from its ``serving`` channel unless another ``channel`` is named."""
    grant = Grant.local("langgraph", [namespace], role="read")
    got = service_of(store).prompt(grant, namespace, playbook, budget=budget, layout=layout, channel=channel,
                                   query=query)  # fmt: skip
    return got.text


def latest_user_text(messages: Sequence[Any]) -> str | None:
    """The latest user message's text (the task at hand), its first :data:`~ace.service.core.MAX_QUERY_CHARS`
    characters; None without one."""
    for m in reversed(messages):
        role = m.get("role") if isinstance(m, Mapping) else getattr(m, "type", None)
        if role in ("human", "user"):
            content = m.get("content") if isinstance(m, Mapping) else m.content
            text = content if isinstance(content, str) else _blocks_text(content)
            return text[:MAX_QUERY_CHARS] if text.strip() else None
    return None


def _blocks_text(content: Any) -> str:
    """The text blocks of a multimodal message's content, joined."""
    if not isinstance(content, Sequence):
        return ""
    parts = [c if isinstance(c, str) else c.get("text", "") if isinstance(c, Mapping) else "" for c in content]
    return "\n".join(p for p in parts if isinstance(p, str) and p)


def with_playbook(messages: Sequence[AnyMessage], text: str) -> list[AnyMessage]:
    """``messages`` with the playbook as the first system message (an earlier playbook message is replaced)."""
    rest = [m for m in messages if getattr(m, "id", None) != PLAYBOOK_MESSAGE_ID]
    return [SystemMessage(content=text, id=PLAYBOOK_MESSAGE_ID), *rest]


def playbook_node(
    store: PlaybookStore | Service, playbook: str, *, namespace: str = "default", budget: int | None = PROMPT_BUDGET,
    channel: str | None = None, query: bool = True,
) -> Callable[[Any], dict[str, Any]]:  # fmt: skip
    """A node for a graph with ``messages`` (``MessagesState``): puts the served playbook first in them, read with
    the latest user message as its query unless ``query=False``."""
    replace_all = RemoveMessage(id=REMOVE_ALL_MESSAGES)
    return _with_playbook_as(store, playbook, namespace, budget, channel, query,
                             lambda m: {"messages": [replace_all, *m]})  # fmt: skip


def playbook_hook(
    store: PlaybookStore | Service, playbook: str, *, namespace: str = "default", budget: int | None = PROMPT_BUDGET,
    channel: str | None = None, query: bool = True,
) -> Callable[[Any], dict[str, Any]]:  # fmt: skip
    """A ``pre_model_hook`` for ``create_react_agent``: the model sees the playbook first (read with the latest user
    message as its query unless ``query=False``); the state is unchanged."""
    return _with_playbook_as(store, playbook, namespace, budget, channel, query, lambda m: {"llm_input_messages": m})


def _with_playbook_as(
    store: PlaybookStore | Service,
    playbook: str,
    namespace: str,
    budget: int | None,
    channel: str | None,
    query: bool,
    update: Callable[[list[AnyMessage]], dict[str, Any]],
) -> Callable[[Any], dict[str, Any]]:
    """A node: the state's messages with the served playbook first, as the state update ``update`` makes."""
    service = service_of(store)

    def node(state: Any) -> dict[str, Any]:  # any state with "messages"
        asked = latest_user_text(state["messages"]) if query else None
        text = playbook_text(service, playbook, namespace=namespace, budget=budget, channel=channel, query=asked)
        return update(with_playbook(state["messages"], text))

    return node


def episode_log(
    messages: Sequence[BaseMessage], outcome: Mapping[str, Any] | bool, *, episode_id: str | None = None,
    task: str | None = None, target: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A LangChain conversation as an ``ace learn`` episode (OpenAI-style messages, tool calls included); the
    playbook's own system message is left out."""
    kept = [m for m in messages if getattr(m, "id", None) != PLAYBOOK_MESSAGE_ID]
    log: dict[str, Any] = {"messages": convert_to_openai_messages(kept), "outcome": outcome}
    for key, value in (("id", episode_id), ("task", task), ("target", target)):
        if value is not None:
            log[key] = value
    return log


def report_outcome(
    queue: EpisodeQueue | Service, playbook: str, messages: Sequence[BaseMessage], outcome: Mapping[str, Any] | bool,
    *, namespace: str = "default", episode_id: str | None = None, task: str | None = None, target: str | None = None,
) -> Episode:  # fmt: skip
    """Send a finished conversation and its outcome to be learned from (a worker reflects and curates)."""
    service = queue if isinstance(queue, Service) else Service(queue.store, queue=queue)
    log = episode_log(messages, outcome, episode_id=episode_id, task=task, target=target)
    return service.submit_episode(Grant.local("langgraph", [namespace]), namespace, playbook, log)[0]


def report_node(
    queue: EpisodeQueue | Service, playbook: str, *, namespace: str = "default"
) -> Callable[[Any], dict[str, Any]]:
    """A node that sends ``state["messages"]`` with ``state["outcome"]`` (and ``episode_id``, ``task``,
    ``target`` when the state has them) as an episode; it adds ``episode`` (its status) to the state."""

    def node(state: Any) -> dict[str, Any]:
        episode = report_outcome(
            queue, playbook, state["messages"], state.get("outcome") or {"success": None}, namespace=namespace,
            episode_id=state.get("episode_id"), task=state.get("task"), target=state.get("target"),
        )  # fmt: skip
        return {"episode": episode.to_dict()}

    return node


__all__ = [
    "PLAYBOOK_MESSAGE_ID",
    "AceStore",
    "StoreUsageError",
    "episode_log",
    "latest_user_text",
    "playbook_hook",
    "playbook_node",
    "playbook_text",
    "report_node",
    "report_outcome",
    "with_playbook",
]
