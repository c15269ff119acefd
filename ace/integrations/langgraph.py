"""ACE inside LangGraph: a :class:`~langgraph.store.base.BaseStore` over the playbook store and memory, and the
pieces that put the playbook into a graph's messages and send the outcome back to learn from.

**The store.** ``graph.compile(store=AceStore(store))`` gives every node (``runtime.store``) and LangMem-style code
ACE's playbooks and memory under namespaces whose first label is the ACE namespace:

==============================  ==============================================================================
namespace                        items
==============================  ==============================================================================
``(ns, "playbooks")``            one per playbook, key = its name: ``{"name", "version", "bullets", "text"}``
                                 (``text``: the prompt rendering under ``budget``). ``put`` with ``{"text":
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
from ace.playbook import Delta, Playbook, render
from ace.playbook.delta import AddOp, RemoveOp, UpdateOp
from ace.playbook.focus import relevant
from ace.playbook.formats import loads
from ace.playbook.render import Layout
from ace.service.queue import Episode, EpisodeQueue
from ace.store import PlaybookStore, VersionInfo

PLAYBOOK_MESSAGE_ID = "ace-playbook"
DEFAULT_SECTION = "STRATEGIES AND HARD RULES"


class StoreUsageError(AceError):
    """A store operation ACE cannot do (an unknown namespace layout, erasing a playbook)."""


class AceStore(BaseStore):
    """LangGraph's store interface over ACE's store, episode queue and memory (see the module doc)."""

    supports_ttl = False

    def __init__(
        self,
        store: PlaybookStore,
        *,
        namespaces: Iterable[str] | None = None,
        budget: int | None = 2000,
        layout: Layout = "stable",
        queue: EpisodeQueue | None = None,
        episodes: Callable[[str], Any] | None = None,
        author: str = "langgraph",
    ) -> None:
        self.store = store
        self.allowed = None if namespaces is None else frozenset(check_name(n, "namespace") for n in namespaces)
        self.budget, self.layout, self.author = budget, layout, author
        self.queue = queue or EpisodeQueue(store)
        self.episodes = episodes

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
        if self.allowed is not None and ns not in self.allowed:
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
        for p in self.store.list():
            names.setdefault(p.namespace, []).append(p.name)
        for ns in sorted(names if self.allowed is None else self.allowed):
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
            if not any(p.name == op.key for p in self.store.list(ns)):
                return None
            return self._playbook_item(ns, op.key)
        if kind == "bullets":
            if not any(p.name == name for p in self.store.list(ns)):
                return None
            info, pb = self._head(ns, name)
            bullet = pb.get(op.key)
            return None if bullet is None else _bullet_item(op.namespace, bullet, info)
        if kind == "episodes":
            found = self.queue.find(op.key, namespace=ns)
            return None if found is None else _episode_item(op.namespace, found)
        facts = [f for f in self._facts(ns) if str(f.id) == op.key]
        return _fact_item(op.namespace, facts[0]) if facts else None

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
            items = [_scored(self._playbook_item(ns, p.name), None) for p in self.store.list(ns)]
        elif kind == "bullets":
            info, pb = self._head(ns, name)
            if op.query:  # bullets sharing informative words with the query first, scored by rank; then the rest
                ranked = relevant(pb, op.query, len(pb))
                seen = {b.id for b in ranked}
                count = max(len(ranked), 1)
                items = [_scored(_bullet_item(prefix, b, info), 1.0 - i / count) for i, b in enumerate(ranked)]
                items += [_scored(_bullet_item(prefix, b, info), 0.0) for b in pb if b.id not in seen]
            else:
                items = [_scored(_bullet_item(prefix, b, info), None) for b in pb]
        elif kind == "episodes":
            tier = self.episodes(ns) if self.episodes is not None else None
            if op.query and tier is not None:
                hits_ = tier.search(op.query, op.offset + op.limit)
                items = [_scored(_memory_item(prefix, h.episode), h.similarity) for h in hits_]
            else:
                items = [_scored(_episode_item(prefix, e), None) for e in self.queue.list(namespace=ns, limit=1000)]
        else:
            items = [_scored(_fact_item(prefix, f), None) for f in self._facts(ns)]
        if op.filter:
            items = [it for it in items if _filtered(it.value, op.filter)]
        return items[op.offset : op.offset + op.limit]

    def _head(self, ns: str, name: str) -> tuple[VersionInfo, Playbook]:
        version, pb = self.store.load_versioned(name, None, namespace=ns)
        return self.store.version(name, version, namespace=ns), pb

    def _playbook_item(self, ns: str, name: str) -> Item:
        info, pb = self._head(ns, name)
        value = {
            "name": name,
            "version": info.version,
            "bullets": len(pb),
            "text": render(pb, budget=self.budget, layout=self.layout),
        }
        return Item(value=value, key=name, namespace=(ns, "playbooks"), created_at=info.created_at,
                    updated_at=info.created_at)  # fmt: skip

    def _facts(self, ns: str) -> list[Any]:
        from ace.memory import KnowledgeGraph

        return KnowledgeGraph(self.store, namespace=ns).facts()

    # -- writes -------------------------------------------------------------------------------------------
    def _put(self, op: PutOp) -> None:
        ns, kind, _ = self._where(op.namespace)
        if kind == "playbooks":
            name = check_name(op.key, "playbook")
            if op.value is None:
                raise StoreUsageError(f"playbook {ns}/{name} is not erased: history is kept (roll back instead)")
            if "operations" in op.value:
                delta = Delta.model_validate({k: v for k, v in op.value.items() if k != "expected_version"})
                self.store.commit(name, delta, namespace=ns, expected_version=op.value.get("expected_version"),
                                  author=self.author)  # fmt: skip
            elif "text" in op.value:
                self.store.create(name, loads(str(op.value["text"]), op.value.get("format")), namespace=ns,
                                  author=self.author, message="import through the LangGraph store")  # fmt: skip
            else:
                raise StoreUsageError("a playbook item is {'text': <playbook file>} or a delta {'operations': [...]}")
        elif kind == "episodes":
            if op.value is None:
                raise StoreUsageError("a sent episode is not erased")
            value = dict(op.value)
            playbook = value.pop("playbook", None)
            if not isinstance(playbook, str):
                raise StoreUsageError("an episode item names the playbook to learn into: {'playbook': name, ...}")
            self.queue.submit(playbook, {**value, "id": value.get("id", op.key)}, namespace=ns)
        else:
            raise StoreUsageError("facts are written by the learner (the memory tiers), not through the store")

    def _write_bullets(self, ns: str, name: str, puts: Sequence[PutOp]) -> None:
        self.store.ensure(name, namespace=ns, author=self.author)
        pb = self.store.load(name, namespace=ns)
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
        self.store.commit(name, Delta(operations=ops, reasoning="written through the LangGraph store"),
                          namespace=ns, author=self.author)  # fmt: skip


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


def _fact_item(namespace: tuple[str, ...], f: Any) -> Item:
    from dataclasses import asdict
    from datetime import UTC

    now = datetime.now(UTC)
    return Item(value=asdict(f), key=str(f.id), namespace=namespace, created_at=now, updated_at=now)


def _memory_item(namespace: tuple[str, ...], e: Any) -> Item:
    from dataclasses import asdict

    when = _ts(e.created_at)
    return Item(value=asdict(e), key=e.id, namespace=namespace, created_at=when, updated_at=when)


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
    store: PlaybookStore, playbook: str, *, namespace: str = "default", budget: int | None = 2000,
    layout: Layout = "stable",
) -> str:  # fmt: skip
    """The system prompt that carries the playbook: how to use it, then its bullets under ``budget``."""
    version, pb = store.load_versioned(playbook, None, namespace=namespace)
    return (
        f"Playbook {playbook} v{version}: lessons learned from earlier episodes. Follow the bullets that apply and "
        "cite their ids (e.g. [shr-00001]) when you use one.\n\n" + render(pb, budget=budget, layout=layout)
    )


def with_playbook(messages: Sequence[AnyMessage], text: str) -> list[AnyMessage]:
    """``messages`` with the playbook as the first system message (an earlier playbook message is replaced)."""
    rest = [m for m in messages if getattr(m, "id", None) != PLAYBOOK_MESSAGE_ID]
    return [SystemMessage(content=text, id=PLAYBOOK_MESSAGE_ID), *rest]


def playbook_node(
    store: PlaybookStore, playbook: str, *, namespace: str = "default", budget: int | None = 2000
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A node for a graph with ``messages`` (``MessagesState``): puts the current playbook first in them."""

    def node(state: Mapping[str, Any]) -> dict[str, Any]:
        text = playbook_text(store, playbook, namespace=namespace, budget=budget)
        return {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *with_playbook(state["messages"], text)]}

    return node


def playbook_hook(
    store: PlaybookStore, playbook: str, *, namespace: str = "default", budget: int | None = 2000
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A ``pre_model_hook`` for ``create_react_agent``: the model sees the playbook first; the state is unchanged."""

    def hook(state: Mapping[str, Any]) -> dict[str, Any]:
        text = playbook_text(store, playbook, namespace=namespace, budget=budget)
        return {"llm_input_messages": with_playbook(state["messages"], text)}

    return hook


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
    queue: EpisodeQueue, playbook: str, messages: Sequence[BaseMessage], outcome: Mapping[str, Any] | bool, *,
    namespace: str = "default", episode_id: str | None = None, task: str | None = None, target: str | None = None,
) -> Episode:  # fmt: skip
    """Send a finished conversation and its outcome to be learned from (a worker reflects and curates)."""
    log = episode_log(messages, outcome, episode_id=episode_id, task=task, target=target)
    return queue.submit(playbook, log, namespace=namespace)[0]


def report_node(
    queue: EpisodeQueue, playbook: str, *, namespace: str = "default"
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A node that sends ``state["messages"]`` with ``state["outcome"]`` (and ``episode_id``, ``task``,
    ``target`` when the state has them) as an episode; it adds ``episode`` (its status) to the state."""

    def node(state: Mapping[str, Any]) -> dict[str, Any]:
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
    "playbook_hook",
    "playbook_node",
    "playbook_text",
    "report_node",
    "report_outcome",
    "with_playbook",
]
