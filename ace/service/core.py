"""The operations every front end offers, in one place: the HTTP routes (:mod:`ace.service.app`) and the MCP tools
(:mod:`ace.service.mcp`) are thin adapters over :class:`Service`.

Each operation takes the caller's :class:`~ace.service.auth.Grant`, checks it once (namespace and role), applies
the service's :class:`Limits` and calls the store or the episode queue. The operations are synchronous (the store
is); an asynchronous front end calls them through :meth:`Service.run`, which runs them in worker threads, never on
the event loop, with a separate bound per kind of work (reads, writes, heavy work: checks and memory searches): a
writer that waits for SQLite's lock holds one writer's thread, while reads and ``/v1/health`` go on answering.

Limits an exposed service needs: a body size (enforced by the front end before the body is read), a quota of
waiting episodes per namespace (count and size; :class:`~ace.service.queue.QuotaExceeded`, HTTP 429), a bound on
the work one ``check`` may do (versions times bullets; :class:`TooMuchWork`) with its result cached per head, and
bounds on every number a caller passes (versions, budgets, limits), so that ``since=1e30`` is a clear error, not
an overflow.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import anyio

from ace.errors import AceError
from ace.names import InvalidName, check_name
from ace.playbook import Delta, DeltaError, Playbook, Source, render
from ace.playbook.diff import PlaybookDiff
from ace.playbook.formats import dumps, loads, to_json
from ace.playbook.jsonio import JSONLimitError, load_json
from ace.playbook.query import indexed as query_indexed
from ace.playbook.render import Layout
from ace.playbook.text import clean_text
from ace.service.auth import Grant, Role
from ace.service.queue import Episode, EpisodeError, EpisodeQueue, Quota, QuotaExceeded, Status
from ace.store import SERVING, PlaybookInfo, PlaybookStore, VersionInfo
from ace.store.channels import POLICIES, check_channel

T = TypeVar("T")
Kind = Literal["read", "write", "heavy"]
Format = Literal["text", "json", "ace", "md", "skillbook"]
MAX_NUMBER = 2**31 - 1  # the largest version, budget or count a caller may name (an SQL INTEGER)
READ_NOW_BULLETS = 5_000  # a held playbook up to this size renders on the event loop (a few ms at most, memoized)
MAX_EPISODE_DEPTH = 32  # nesting of an episode's JSON (a chat log with tool calls is about 6 levels deep)
PROMPT_BUDGET = 2000  # tokens of playbook an agent reads by default (every agent-facing front end: one default)
PROMPT_LAYOUT: Layout = "stable"  # the layout that keeps a provider's prompt cache warm from version to version
MAX_QUERY_CHARS = 2000  # a read's query (the bullets relevant to it join the prompt): longer is a clear error


class AccessDenied(AceError):
    """The caller's token does not allow this namespace or role (HTTP 403)."""


class TooMuchWork(AceError):
    """A request would cost more than the service allows one call (HTTP 422); the message says how to narrow it."""


def _reason(reason: str | None) -> str | None:
    """A reviewer's or admin's reason, as stored: line ends made \\n, no control or direction-changing character
    (it is shown to people, terminals and the curator), at most 2,000 characters; None or blank: None."""
    if reason is None or not reason.strip():
        return None
    try:
        return clean_text(reason, limit=2000, what="the reason")
    except ValueError as e:
        raise BadRequest(str(e)) from None


class BadRequest(AceError):
    """A parameter or body that is not what the operation takes (HTTP 422)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one caller may ask of the service."""

    max_body_bytes: int = 1 << 20  # a delta or an episode is small; large playbooks are imported with the CLI
    body_timeout_s: float = 30.0  # a request body not whole this long after it started is refused (408)
    max_queued_episodes: int = 1_000  # per namespace, waiting or running
    max_queued_chars: int = 64 << 20  # per namespace, the waiting episodes' JSON together
    check_span: int = 200  # versions one check compares at most
    check_work: int = 100_000  # versions x bullets one check may compare (a 4.7k-bullet playbook: 21 versions, ~2 s)
    read_threads: int = 8  # reads the event loop cannot answer at once (a rebuild, an export, a history)
    write_threads: int = 4  # writers serialize on the database anyway; more would only wait for its lock
    heavy_threads: int = 2  # checks and memory searches (CPU work, a model to load): never every core


class ReadOptions(TypedDict, total=False):
    """How :meth:`Service.read` gives a playbook; a missing key takes the default shown."""

    version: int | None  # a version pinned; None: where ``channel`` points
    channel: str | None  # None: "serving" (what agents read: the head until someone moves it), or "candidate"
    budget: int | None  # tokens of prompt text (None: the whole playbook)
    layout: Layout  # "sections" (the paper's text, what export writes) or "stable" (the cache-friendly prompt)
    format: Format  # "text" (prompt text) or an export: "json", "ace", "md", "skillbook"
    query: str | None  # with a budget, the bullets most relevant to it join a stable core (ace.playbook.query)


@dataclass(frozen=True, slots=True)
class Read:
    """A playbook as a reader gets it: its version, the text and the media type of that text."""

    version: int
    text: str
    media_type: str
    n_bullets: int


def _channel(version: int | None, channel: str | None) -> str | None:
    """The channel a read resolves: none when it pins a version, else ``channel`` (default ``serving``)."""
    if version is not None:
        if channel is not None:
            raise BadRequest("read a version or a channel, not both")
        return None
    return SERVING if channel is None else check_channel(channel)


def bounded(value: int | None, what: str, *, low: int = 0, high: int = MAX_NUMBER) -> int | None:
    """``value`` if it lies in ``[low, high]`` (or is None), else :class:`BadRequest` saying so."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return value


def version_tag(header: str | None) -> int | None:
    """The version an ``If-Match`` header names (``7`` or the ETag ``"7"``), or None without one."""
    if header is None:
        return None
    tag = header.strip().strip('"')
    if not (tag.isascii() and tag.isdigit()) or len(tag) > 10 or int(tag) > MAX_NUMBER:
        raise BadRequest(f"If-Match must be a version number, got {ascii(header)[:40]}")
    return int(tag)


def parse_episode(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """An episode's log from a request body: JSON, an object, nested no deeper than :data:`MAX_EPISODE_DEPTH`,
    with no unpaired surrogate in any string (they cannot be stored as UTF-8)."""
    if isinstance(body, dict):
        data: Any = body
        if _too_deep(data):
            raise BadRequest(f"the episode is nested deeper than {MAX_EPISODE_DEPTH} levels")
    else:
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError:
            raise BadRequest("the episode is not UTF-8 text") from None
        try:
            data = load_json(text, what="the episode", max_depth=MAX_EPISODE_DEPTH)
        except JSONLimitError as e:  # not JSON, or too large or deep
            what = "the body is not JSON" if str(e).startswith("not valid JSON") else "the body is not an episode"
            raise BadRequest(f"{what}: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"an episode is a JSON object, not {type(data).__name__}")
    if (where := _surrogate(data)) is not None:
        raise BadRequest(f"the episode holds an unpaired surrogate ({where}); send valid Unicode text")
    return data


def _too_deep(value: Any) -> bool:
    from ace.playbook.jsonio import depth

    return depth(value, stop=MAX_EPISODE_DEPTH) > MAX_EPISODE_DEPTH


def _surrogate(value: Any) -> str | None:
    """Where in ``value`` a string holds a lone surrogate (keys included), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return ascii(item[:30])
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def normal_name(value: str, what: str) -> str:
    """A playbook name or namespace as the store keeps it (checked, NFC), or :class:`~ace.names.InvalidName`."""
    return check_name(value, what)


class Service:
    """Read, commit, roll back, import and export playbooks; history, diff, blame and check; record episodes and
    read their status; search the memory tiers: each with one permission check and one set of defaults."""

    def __init__(
        self,
        store: PlaybookStore,
        *,
        queue: EpisodeQueue | None = None,
        episodes: Callable[[str], Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self._queue = queue
        self.episodic = episodes
        self.limits = limits or Limits()
        self._limiters: dict[Kind, anyio.CapacityLimiter] = {}
        self._check_cache: dict[tuple[str, str, int, int], dict[str, Any]] = {}
        self._check_lock = threading.Lock()

    @property
    def queue(self) -> EpisodeQueue:
        """The episode queue in the store's database (made on first use: a reader never creates its tables)."""
        if self._queue is None:
            with self._check_lock:
                if self._queue is None:
                    self._queue = EpisodeQueue(self.store)
        return self._queue

    # -- running off the event loop ---------------------------------------------------------------------
    async def run(self, kind: Kind, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread bounded by ``kind`` (reads, writes and heavy work wait for
        threads of their own: a stuck writer never takes a reader's thread)."""
        limiter = self._limiters.get(kind)
        if limiter is None:
            n = {"read": self.limits.read_threads, "write": self.limits.write_threads}.get(
                kind, self.limits.heavy_threads
            )
            limiter = self._limiters[kind] = anyio.CapacityLimiter(n)
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=limiter)

    # -- access -----------------------------------------------------------------------------------------
    def allowed(self, grant: Grant, namespace: str, role: Role) -> str:
        """``namespace`` as stored, if ``grant`` may ``role`` in it; :class:`AccessDenied` otherwise."""
        ns = normal_name(namespace, "namespace")
        if not grant.allows(ns, role):
            raise AccessDenied(f"this token may not {role} in namespace {ns!r}")
        return ns

    @staticmethod
    def author(grant: Grant) -> str:
        """How a write by ``grant`` is recorded in the log: its token's name (never the token), or the name of an
        in-process grant (:meth:`Grant.local`) as it is."""
        return grant.name if grant.in_process else f"token:{grant.name}"

    # -- playbooks --------------------------------------------------------------------------------------
    def list_playbooks(self, grant: Grant, namespace: str) -> list[dict[str, Any]]:
        ns = self.allowed(grant, namespace, "read")
        return [{"name": p.name, "head": p.head, "created_at": p.created_at.isoformat()} for p in self.store.list(ns)]

    def read(self, grant: Grant, namespace: str, name: str, **options: Unpack[ReadOptions]) -> Read:
        """The playbook (where its ``serving`` channel points, or ``channel``, or ``version``) as prompt text under
        ``budget`` tokens, or exported in ``format`` (:class:`ReadOptions`: the defaults are serving, the whole
        playbook, ``layout="sections"``, ``format="text"``)."""
        got = self._read(grant, namespace, name, options, held_only=False)
        assert got is not None  # only a held-only read may find nothing
        return got

    def read_now(self, grant: Grant, namespace: str, name: str, **options: Unpack[ReadOptions]) -> Read | None:
        """:meth:`read`, if it can be answered at once from the state the store holds (prompt text of a playbook of
        at most :data:`READ_NOW_BULLETS` bullets, the version held, a connection free: see
        :meth:`~ace.store.PlaybookStore.load_held`); None when it cannot (then :meth:`read`, in a thread). This is
        what lets the read route answer on the event loop without a thread hop, and never wait there."""
        return self._read(grant, namespace, name, options, held_only=True)

    def prompt(
        self,
        grant: Grant,
        namespace: str,
        name: str,
        *,
        version: int | None = None,
        channel: str | None = None,
        budget: int | None = PROMPT_BUDGET,
        layout: Layout = PROMPT_LAYOUT,
        query: str | None = None,
    ) -> Read:
        """What an agent reads: one line naming the playbook, its version and how to use it, then its bullets under
        ``budget`` tokens (None: all of them), from the ``serving`` channel unless a ``channel`` or ``version`` is
        named. The MCP tool, the LangGraph node and hook and the Agents SDK instructions all give this text;
        :meth:`read` is the playbook itself (the HTTP resource, an export). ``query`` (the task at hand, at most
        :data:`MAX_QUERY_CHARS` characters): half the budget holds the bullets most relevant to it."""
        got = self.read(grant, namespace, name, version=version, channel=channel, budget=budget, layout=layout,
                        query=query)  # fmt: skip
        ns = normal_name(namespace, "namespace")
        header = (
            f"# playbook {ns}/{normal_name(name, 'playbook')} v{got.version} ({got.n_bullets} bullets): lessons "
            "learned from earlier episodes. Follow the bullets that apply and cite their ids (e.g. [shr-00001]) "
            "when you use one.\n\n"
        )
        return dataclasses.replace(got, text=header + got.text)

    def playbook(
        self, grant: Grant, namespace: str, name: str, *, version: int | None = None, channel: str | None = None
    ) -> tuple[VersionInfo, Playbook]:
        """The playbook object itself (the head, ``version`` or where ``channel`` points) with its version's record,
        for adapters that hand out bullets one by one."""
        ns = self.allowed(grant, namespace, "read")
        bounded(version, "version", low=1)
        name = normal_name(name, "playbook")
        v, pb = self.store.load_versioned(name, version, namespace=ns, channel=channel)
        return self.store.version(name, v, namespace=ns), pb

    # -- channels -----------------------------------------------------------------------------------------------
    def channels(self, grant: Grant, namespace: str, name: str) -> list[dict[str, Any]]:
        """Where the playbook's channels point: ``candidate`` (the head), ``serving`` (what agents read), others."""
        ns = self.allowed(grant, namespace, "read")
        return [c.to_dict() for c in self.store.channels(normal_name(name, "playbook"), namespace=ns)]

    def channel_log(self, grant: Grant, namespace: str, name: str, channel: str | None = None) -> list[dict[str, Any]]:
        ns = self.allowed(grant, namespace, "read")
        name = normal_name(name, "playbook")
        return [m.to_dict() for m in self.store.channel_log(name, namespace=ns, channel=channel)]

    # -- review: what learning added since the serving version, approved or rejected by a person ---------------------
    def set_promotion(self, grant: Grant, namespace: str, name: str, policy: str) -> dict[str, Any]:
        """Set how ``serving`` moves: ``immediate`` (it follows the head), ``review`` (a reviewer approves),
        ``gated`` (a matched trial serves a better candidate) or ``gated+review`` (a trial passes it, a reviewer
        serves it; both gated policies need the playbook's evaluation lane first); an admin's decision."""
        ns = self.allowed(grant, namespace, "admin")
        name = normal_name(name, "playbook")
        if policy not in POLICIES:
            raise BadRequest(f"a promotion policy is one of {', '.join(POLICIES)}, not {policy[:40]!r}")
        if policy.startswith("gated"):
            from ace.governance import gate

            lane = gate.get(self.store, name, namespace=ns)
            if lane is None or lane.tasks is None:
                raise BadRequest(f"{ns}/{name} has no evaluation lane: set one before the {policy} policy (ace "
                                 f"playbook lane {name} --tasks FILE --evaluator NAME)")  # fmt: skip
        self.store.set_promotion(name, policy, namespace=ns, author=self.author(grant))
        return self.pending(grant, ns, name)

    def pending(self, grant: Grant, namespace: str, name: str) -> dict[str, Any]:
        """What learning added since the version agents read: the policy, the serving and candidate versions, each
        version in between with its provenance (author, message, the task, step and run its delta came from), the
        diff from serving to candidate, and the collapse detectors' alerts on that change."""
        from ace.collapse import Detectors

        ns = self.allowed(grant, namespace, "read")
        name = normal_name(name, "playbook")
        serving = self.store.resolve(name, SERVING, namespace=ns)
        head = self.store.head_version(name, namespace=ns)
        found: dict[str, Any] = {"policy": self.store.promotion(name, namespace=ns), "serving": serving,
                                 "candidate": head, "versions": [], "diff": None, "alerts": []}  # fmt: skip
        found["gate"] = self._verdict(ns, name, head, serving)
        if head == serving:
            return found
        if head - serving > self.limits.check_span:
            raise TooMuchWork(f"{head - serving} versions are pending: review at most {self.limits.check_span} at once")
        history = self.store.history(name, namespace=ns, since=serving + 1)
        found["versions"] = [h.to_dict() for h in history]
        found["diff"] = self.store.diff(name, serving, head, namespace=ns).to_dict()
        before, after = self.store.load(name, serving, namespace=ns), self.store.load(name, head, namespace=ns)
        found["alerts"] = [a.to_dict() for a in Detectors().check(before, after, versions=(serving, head))]
        return found

    def approve(
        self,
        grant: Grant,
        namespace: str,
        name: str,
        *,
        to: int,
        reason: str | None = None,
        only: Sequence[int] | None = None,
        edit: Delta | str | bytes | None = None,
    ) -> dict[str, Any]:
        """Serve version ``to``, the candidate version the reviewer looked at (not whatever the head is by then:
        learning may have moved on), after the one served now. Logged as approved by this reviewer, with the
        versions reviewed as evidence. A reviewer's (or admin's) decision, under the ``review`` policy.

        ``only`` (some of the versions waiting, serving + 1 .. ``to``) and ``edit`` (a delta the reviewer writes)
        approve part of the change, or the change as the reviewer edited it: a new head is made of the serving
        version, the deltas of the versions kept and the edit (``to`` must still be the head: the versions left
        out are turned down, with ``reason``, as a rejection is) and served."""
        ns = self.allowed(grant, namespace, "review")
        name = normal_name(name, "playbook")
        bounded(to, "the version to approve", low=1)
        reason = _reason(reason)
        serving = self._under_review(ns, name)
        if to <= serving:
            raise BadRequest(f"serving is at v{serving}: approve a later version (moving it back is an admin's move)")
        waiting = list(range(serving + 1, to + 1))
        if edit is not None and not isinstance(edit, Delta):
            edit = Delta.parse(edit) if edit.strip() else None
        if only is not None or (edit is not None and edit.operations):
            kept = sorted(set(waiting if only is None else only))
            if any(v not in waiting for v in kept):
                raise BadRequest(f"approve versions waiting for review (v{serving + 1}..v{to}), not "
                                 f"{[v for v in kept if v not in waiting][:5]}")  # fmt: skip
            if kept != waiting or (edit is not None and edit.operations):
                return self._approve_part(grant, ns, name, serving, to, kept, edit, reason)
        if self.store.promotion(name, namespace=ns) == "gated+review":
            verdict = self._verdict(ns, name, to, serving)
            if verdict is None or verdict["status"] != "passed":
                seen = "no trial" if verdict is None else f"trial #{verdict['trial']} is {verdict['status']}"
                raise BadRequest(f"{ns}/{name} is gated+review: v{to} must pass a trial against v{serving} before "
                                 f"it is approved ({seen}; ace playbook trial {name})")  # fmt: skip
        evidence = {"reviewed": list(range(serving + 1, to + 1)), "decision": "approved"}
        why = "approved" + (f": {reason}" if reason else "")
        self.store.move_channel(name, SERVING, to, namespace=ns, author=self.author(grant), reason=why,
                                evidence=evidence, expected=serving)  # fmt: skip
        return self.pending(grant, ns, name)

    def _approve_part(
        self, grant: Grant, ns: str, name: str, serving: int, to: int, kept: list[int], edit: Delta | None,
        reason: str | None,
    ) -> dict[str, Any]:  # fmt: skip
        if self.store.promotion(name, namespace=ns) == "gated+review":
            raise BadRequest(f"{ns}/{name} is gated+review: only a version that passed a trial is approved, "
                             "whole (a part or an edit would be served untried: reject it, and learning tries "
                             "again)")  # fmt: skip
        left = [v for v in range(serving + 1, to + 1) if v not in kept]
        if left and not (reason or "").strip():
            raise BadRequest("approving part of a change turns the rest down: give the reason")
        author = self.author(grant)
        parts = [f"kept {', '.join(f'v{v}' for v in kept) or 'none'} of v{serving + 1}..v{to}"]
        if left:
            parts.append(f"turned down {', '.join(f'v{v}' for v in left)}")
        if edit is not None and edit.operations:
            parts.append(f"edited by {author or 'the reviewer'} ({len(edit.operations)} operation(s))")
        message = "approved part: " + "; ".join(parts) + (f": {reason.strip()}" if reason and reason.strip() else "")
        if edit is not None and edit.operations:
            edit = edit.model_copy(update={"source": edit.source or Source(role="reviewer", note=author)})
        try:
            made = self.store.pick(name, serving, kept, edit=edit, namespace=ns, expected_version=to, author=author,
                                   message=message[:4000])  # fmt: skip
        except DeltaError as e:
            why = (
                "the edit does not apply"
                if edit is not None and "cannot be kept" not in str(e)
                else "that part cannot be approved alone"
            )
            raise BadRequest(f"{why}: {e}") from e
        evidence = {"reviewed": list(range(serving + 1, to + 1)), "decision": "approved part", "kept": kept,
                    "rejected": left, "edit": None if edit is None else json.loads(edit.to_json())}  # fmt: skip
        # the channel log's reason: the whole message when it fits, else the reviewer's own (the parts are evidence)
        said = reason.strip() if reason and reason.strip() else ""
        moved_why = message if len(message) <= 2000 else (said or message[:2000])
        self.store.move_channel(name, SERVING, made.version, namespace=ns, author=author, reason=moved_why,
                                evidence=evidence, expected=serving)  # fmt: skip
        return self.pending(grant, ns, name)

    def reject(self, grant: Grant, namespace: str, name: str, *, candidate: int, reason: str) -> dict[str, Any]:
        """Turn down what learning added up to ``candidate``, the head the reviewer looked at (if learning moved on
        since, :class:`~ace.store.StaleVersionError`: look again): the head is rolled back to serving's state (a new
        version; the rejected ones stay in history, and the reason in the rollback's message, where curators and
        people see it) and serving moves to it (the same state). A reviewer's (or admin's) decision, under the
        ``review`` policy."""
        ns = self.allowed(grant, namespace, "review")
        name = normal_name(name, "playbook")
        bounded(candidate, "the candidate version", low=1)
        if not reason.strip() or len(reason) > 2000:
            raise BadRequest("a rejection gives its reason (at most 2,000 characters)")
        reason = _reason(reason) or ""
        serving = self._under_review(ns, name)
        if candidate <= serving:
            raise BadRequest(f"nothing to reject at v{candidate}: serving is at v{serving}")
        span = f"v{candidate}" if candidate == serving + 1 else f"v{serving + 1}..v{candidate}"
        message = f"rejected {span}: {reason.strip()}"
        author = self.author(grant)
        # serving's state again, its ids counter kept where the rejected versions left it (never drawn twice)
        back = self.store.pick(name, serving, [], namespace=ns, expected_version=candidate, author=author,
                               message=message)  # fmt: skip
        # serving moves to the rollback: the same state agents read, at the head, so nothing is left pending
        evidence = {"reviewed": list(range(serving + 1, candidate + 1)), "decision": "rejected"}
        self.store.move_channel(name, SERVING, back.version, namespace=ns, author=author, reason=message,
                                evidence=evidence, expected=serving)  # fmt: skip
        return self.pending(grant, ns, name)

    def turned_down(self, grant: Grant, namespace: str, name: str, *, limit: int = 20) -> list[dict[str, str]]:
        """The lessons reviewers turned down lately (by a rejection or a partial approval), newest first, each with
        the reviewer's reason: what the curator is shown (:meth:`~ace.store.PlaybookStore.turned_down`)."""
        ns = self.allowed(grant, namespace, "read")
        bounded(limit, "limit", low=1, high=100)
        found = self.store.turned_down(normal_name(name, "playbook"), namespace=ns, limit=limit)
        return [{"text": text, "reason": reason} for text, reason in found]

    def _under_review(self, ns: str, name: str) -> int:
        """The serving version of a playbook under the review policy (:class:`BadRequest` under another)."""
        policy = self.store.promotion(name, namespace=ns)
        if policy not in ("review", "gated+review"):
            raise BadRequest(f"{ns}/{name} has the {policy} policy: nothing waits for review (ace review policy)")
        return self.store.resolve(name, SERVING, namespace=ns)

    def move_channel(
        self,
        grant: Grant,
        namespace: str,
        name: str,
        channel: str,
        version: int | None,
        *,
        reason: str | None = None,
        evidence: dict[str, Any] | None = None,
        expected: int | None = None,
    ) -> dict[str, Any]:
        """Point ``channel`` (``serving``: what agents read) at ``version``, or back to following the head
        (``version=None``): an admin's decision, logged with the reason and evidence."""
        ns = self.allowed(grant, namespace, "admin")
        bounded(version, "version", low=1)
        bounded(expected, "the expected version", low=1)
        if reason is not None and len(reason) > 2000:
            raise BadRequest("a reason is at most 2,000 characters")
        reason = _reason(reason)
        info = self.store.move_channel(normal_name(name, "playbook"), channel, version,
                                       namespace=ns, author=self.author(grant), reason=reason, evidence=evidence,
                                       expected=expected)  # fmt: skip
        return info.to_dict()

    def catalog(self, grant: Grant) -> list[PlaybookInfo]:
        """Every playbook ``grant`` may read, in every namespace it may read."""
        return [p for p in self.store.list() if grant.allows(p.namespace, "read")]

    def ensure(self, grant: Grant, namespace: str, name: str) -> None:
        """Make an empty playbook ``name`` if there is none (a no-op when it exists)."""
        ns = self.allowed(grant, namespace, "write")
        self.store.ensure(normal_name(name, "playbook"), namespace=ns, author=self.author(grant))

    def _read(self, grant: Grant, namespace: str, name: str, options: ReadOptions, *, held_only: bool) -> Read | None:
        ns = self.allowed(grant, namespace, "read")
        version, budget = options.get("version"), options.get("budget")
        layout, format = options.get("layout", "sections"), options.get("format", "text")
        bounded(version, "version", low=1)
        bounded(budget, "budget")
        query = options.get("query")
        if query is not None and (not isinstance(query, str) or len(query) > MAX_QUERY_CHARS):
            raise BadRequest(f"a query is a text of at most {MAX_QUERY_CHARS:,} characters")
        name = normal_name(name, "playbook")
        channel = _channel(version, options.get("channel"))
        if held_only:
            held = self.store.load_held(name, version, namespace=ns, channel=channel) if format == "text" else None
            if held is None or len(held[1]) > READ_NOW_BULLETS:
                return None
            if query is not None and budget is not None and not query_indexed(held[1]):
                return None  # its relevance index is built in a read thread, once per version
            v, pb = held
        else:
            v, pb = self.store.load_versioned(name, version, namespace=ns, channel=channel)
        if format == "json":
            return Read(v, to_json(pb, indent=None), "application/json", len(pb))
        if format == "skillbook":
            return Read(v, dumps(pb, format), "application/json", len(pb))
        if format != "text":  # an export in the paper's text format or Markdown
            return Read(v, dumps(pb, format), "text/plain", len(pb))
        return Read(v, render(pb, budget=budget, layout=layout, query=query), "text/plain", len(pb))

    def import_playbook(
        self,
        grant: Grant,
        namespace: str,
        name: str,
        text: str,
        *,
        format: Literal["ace", "json", "md", "skillbook"] | None = None,
        force: bool = False,
        message: str = "import",
    ) -> VersionInfo:
        """``text`` (a playbook file) as version 1 of a new playbook. Judged like a delta (the quality gate, the
        injection check on content and section names) unless ``force``, which needs the admin role and is
        recorded in the version's message."""
        ns = self.allowed(grant, namespace, "admin" if force else "write")
        pb = loads(text, format)
        kwargs: dict[str, Any] = {"force": True} if force else {}
        return self.store.create(
            normal_name(name, "playbook"), pb, namespace=ns, author=self.author(grant), message=message, **kwargs
        )

    def commit(
        self,
        grant: Grant,
        namespace: str,
        name: str,
        delta: Delta | str | bytes,
        *,
        expected_version: int | None = None,
    ) -> VersionInfo:
        """Apply a delta (parsed here if it is text) to the head; ``expected_version`` as for the store."""
        ns = self.allowed(grant, namespace, "write")
        bounded(expected_version, "the expected version", low=1)
        parsed = delta if isinstance(delta, Delta) else Delta.parse(delta)
        return self.store.commit(
            normal_name(name, "playbook"),
            parsed,
            namespace=ns,
            expected_version=expected_version,
            author=self.author(grant),
        )

    def rollback(
        self, grant: Grant, namespace: str, name: str, to: int, *, expected_version: int | None = None
    ) -> tuple[VersionInfo, bool]:
        """The state of version ``to`` as a new head: ``(head, made)``; ``made`` is False when the head had that state
        already (nothing was written)."""
        ns = self.allowed(grant, namespace, "write")
        bounded(to, "the version to roll back to", low=1)
        bounded(expected_version, "the expected version", low=1)
        name = normal_name(name, "playbook")
        before = self.store.head_version(name, namespace=ns)
        info = self.store.rollback(name, to, namespace=ns, expected_version=expected_version, author=self.author(grant))
        return info, info.version != before

    def history(
        self, grant: Grant, namespace: str, name: str, *, since: int = 1, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Versions from ``since``, oldest first, at most ``limit`` of them (ask again from the last one + 1)."""
        ns = self.allowed(grant, namespace, "read")
        bounded(since, "since", low=1)
        bounded(limit, "limit", low=1, high=10_000)
        return [
            h.to_dict()
            for h in self.store.history(normal_name(name, "playbook"), namespace=ns, since=since, limit=limit)
        ]

    def diff(self, grant: Grant, namespace: str, name: str, v1: int, v2: int) -> dict[str, Any]:
        ns = self.allowed(grant, namespace, "read")
        bounded(v1, "from", low=1)
        bounded(v2, "to", low=1)
        return self.store.diff(normal_name(name, "playbook"), v1, v2, namespace=ns).to_dict()

    def changes(self, grant: Grant, namespace: str, name: str, v1: int, v2: int) -> PlaybookDiff:
        """:meth:`diff` as the diff itself: each changed bullet before and after (the console's word-level view)."""
        ns = self.allowed(grant, namespace, "read")
        bounded(v1, "from", low=1)
        bounded(v2, "to", low=1)
        return self.store.diff(normal_name(name, "playbook"), v1, v2, namespace=ns)

    def blame(self, grant: Grant, namespace: str, name: str, bullet_id: str) -> list[dict[str, Any]]:
        ns = self.allowed(grant, namespace, "read")
        return [e.to_dict() for e in self.store.blame(normal_name(name, "playbook"), bullet_id, namespace=ns)]

    def check(self, grant: Grant, namespace: str, name: str, *, first: int | None = None) -> dict[str, Any]:
        """The collapse detectors over versions ``first`` .. head (default: as many of the last ones as the work
        bound allows, at most ``check_span``). The result is cached per head: asking again costs nothing."""
        from ace.collapse import Detectors

        ns = self.allowed(grant, namespace, "read")
        name = normal_name(name, "playbook")
        bounded(first, "from", low=1)
        head = self.store.head(name, namespace=ns)
        per_version = max(head.n_bullets, 1)
        span = max(1, min(self.limits.check_span, self.limits.check_work // per_version))
        start = first if first is not None else max(1, head.version - span + 1)
        if start > head.version:
            raise BadRequest(f"from={start} is past the head (version {head.version})")
        if head.version - start + 1 > span:  # every version is rebuilt: a read token must not ask for all of them
            raise TooMuchWork(
                f"check at most {span} versions of this playbook at a time ({head.n_bullets} bullets; the bound is "
                f"{self.limits.check_work:,} bullet-versions): from={head.version - span + 1} or later"
            )
        key = (ns, name, start, head.version)
        with self._check_lock:
            if (cached := self._check_cache.get(key)) is not None:
                return cached
        history = self.store.history(name, namespace=ns, since=start)
        alerts = Detectors().scan([(h.version, self.store.load(name, h.version, namespace=ns)) for h in history])
        result = {
            "versions": [history[0].version, history[-1].version] if history else [],
            "alerts": [a.to_dict() for a in alerts],
        }
        with self._check_lock:
            if len(self._check_cache) >= 256:
                self._check_cache.pop(next(iter(self._check_cache)))
            self._check_cache[key] = result
        return result

    # -- episodes ---------------------------------------------------------------------------------------
    def submit_episode(
        self, grant: Grant, namespace: str, name: str, body: bytes | str | dict[str, Any]
    ) -> tuple[Episode, bool]:
        """Queue an episode (its log, as ``ace learn`` reads it) for a worker; ``(episode, queued_now)``. The same
        episode sent again is not queued twice. Refused with :class:`QuotaExceeded` when the namespace's queue is
        full."""
        ns = self.allowed(grant, namespace, "write")
        name = normal_name(name, "playbook")
        log = parse_episode(body)
        quota = Quota(self.limits.max_queued_episodes, self.limits.max_queued_chars)
        try:
            sent, new = self.queue.submit(name, log, namespace=ns, quota=quota)
        except (ValueError, TypeError, RecursionError) as e:  # a log the task reader cannot take
            raise EpisodeError(f"the episode is not valid: {type(e).__name__}: {e}") from None
        if new:
            self._watch(ns, name, log, sent.episode_id)
        return sent, new

    # -- the gate: matched trials and the watch after a promotion (ace.governance) ----------------------------------
    def _verdict(self, ns: str, name: str, candidate: int, serving: int) -> dict[str, Any] | None:
        """The newest trial of ``candidate`` against ``serving`` (its status, p-value, effect), or None."""
        from ace.governance import gate

        found = gate.verdict(self.store, name, namespace=ns, candidate=candidate, serving=serving)
        if found is None:
            return None
        decision = (found.decision or {}).get("decision") or {}
        return {"trial": found.id, "status": found.status, "p_value": decision.get("p_value"),
                "effect": decision.get("effect"), "note": found.note}  # fmt: skip

    def _watch(self, ns: str, name: str, log: dict[str, Any], episode_id: str) -> None:
        """An episode's outcome, kept for the version its agent read when the playbook is watched (a drop after a
        promotion demotes serving: :mod:`ace.governance.watch`)."""
        from ace.governance.watch import observe

        raw = log.get("outcome")
        if isinstance(raw, dict):
            raw = next((raw[k] for k in ("success", "correct", "won") if k in raw), None)
        success = raw
        if not isinstance(success, bool):
            return
        version = log.get("playbook_version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            return  # a version no agent could have read ("2", true, 2.5): not believed, not kept
        observe(self.store, name, namespace=ns, success=success, version=version, episode=episode_id)

    def gate(self, grant: Grant, namespace: str, name: str) -> dict[str, Any]:
        """The playbook's gate: its policy, lane, test settings, campaign, watch, and its latest trials."""
        from ace.governance import gate

        ns = self.allowed(grant, namespace, "read")
        name = normal_name(name, "playbook")
        found = gate.get(self.store, name, namespace=ns)
        trials = gate.list_trials(self.store, name, namespace=ns, limit=10)
        return {"policy": self.store.promotion(name, namespace=ns), **(found or gate.Gate()).to_dict(),
                "trials": [t.to_dict() for t in trials]}  # fmt: skip

    def set_lane(self, grant: Grant, namespace: str, name: str, **settings: Any) -> dict[str, Any]:
        """Set the evaluation lane (``tasks``, ``evaluator``) and the test's settings (``alpha``, ``min_effect``,
        ``test``, ``spending``, ``looks``, ``new_campaign``): an admin's decision (:func:`ace.governance.set_lane`)."""
        from ace.governance import gate

        ns = self.allowed(grant, namespace, "admin")
        name = normal_name(name, "playbook")
        gate.set_lane(self.store, name, namespace=ns, author=self.author(grant), **settings)
        return self.gate(grant, ns, name)

    def set_watch(
        self, grant: Grant, namespace: str, name: str, *, on: bool, window: int | None = None,
        alpha: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Watch serving after a promotion (demote it on a significant drop of reported outcomes), or stop."""
        from ace.governance import gate

        ns = self.allowed(grant, namespace, "admin")
        name = normal_name(name, "playbook")
        gate.set_watch(self.store, name, namespace=ns, on=on, window=window, alpha=alpha, author=self.author(grant))
        return self.gate(grant, ns, name)

    def trial(
        self, grant: Grant, namespace: str, name: str, llm: Any, *, budget_tokens: int | None = None,
        provider: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Run (or go on with) the trial of the candidate against serving on the lane; under ``gated`` a better
        candidate is served (:func:`ace.governance.run_trial`). A reviewer's (or admin's) call: it spends tokens
        and may move serving."""
        from ace.governance import run_trial

        ns = self.allowed(grant, namespace, "review")
        name = normal_name(name, "playbook")
        bounded(budget_tokens, "the token budget", low=1)
        report = run_trial(self.store, name, llm, namespace=ns, budget_tokens=budget_tokens,
                           author=self.author(grant), provider=provider)  # fmt: skip
        return report.to_dict()

    def episode(self, grant: Grant, namespace: str, name: str, episode_id: str) -> Episode:
        ns = self.allowed(grant, namespace, "read")
        return self.queue.get(normal_name(name, "playbook"), episode_id, namespace=ns)

    def find_episode(self, grant: Grant, namespace: str, episode_id: str) -> Episode | None:
        """An episode of any playbook of the namespace by its id, or None."""
        ns = self.allowed(grant, namespace, "read")
        return self.queue.find(episode_id, namespace=ns)

    def episodes(
        self, grant: Grant, namespace: str, name: str | None = None, *, status: Status | None = None, limit: int = 100
    ) -> list[Episode]:
        """The namespace's episodes (of playbook ``name`` only, when given), newest first."""
        ns = self.allowed(grant, namespace, "read")
        bounded(limit, "limit", low=1, high=1000)
        playbook = None if name is None else normal_name(name, "playbook")
        return self.queue.list(namespace=ns, playbook=playbook, status=status, limit=limit)

    # -- memory -----------------------------------------------------------------------------------------
    def search_episodes(
        self, grant: Grant, namespace: str, query: str | None, *, k: int = 5, playbook: str | None = None
    ) -> list[dict[str, Any]]:
        """The episodic tier's most similar episodes to ``query`` (the newest without one)."""
        ns = self.allowed(grant, namespace, "read")
        bounded(k, "k", low=1, high=100)
        tier = self.episodic(ns) if self.episodic is not None else None
        if tier is None:
            raise NoMemory("this service has no episodic memory (start it with --memory)")
        if query:
            return [
                {**dataclasses.asdict(h.episode), "similarity": round(h.similarity, 4)}
                for h in tier.search(query, k, playbook=playbook)
            ]
        return [dataclasses.asdict(e) for e in tier.recent(k) if playbook is None or e.playbook == playbook]

    def facts(
        self,
        grant: Grant,
        namespace: str,
        *,
        subject: str | None = None,
        relation: str | None = None,
        history: bool = False,
    ) -> list[dict[str, Any]]:
        from ace.memory import KnowledgeGraph

        ns = self.allowed(grant, namespace, "read")
        found = KnowledgeGraph(self.store, namespace=ns).query(subject, relation, history=history)
        return [dataclasses.asdict(f) for f in found]


class NoMemory(AceError):
    """The service was started without the memory tier asked for (HTTP 404)."""


def service_of(
    target: PlaybookStore | Service,
    *,
    queue: EpisodeQueue | None = None,
    episodes: Callable[[str], Any] | None = None,
) -> Service:
    """``target`` if it is a :class:`Service`, else a service over the store ``target`` (how the library adapters,
    which take either, reach the one set of operations)."""
    if isinstance(target, Service):
        return target
    return Service(target, queue=queue, episodes=episodes)


__all__ = [
    "MAX_NUMBER",
    "PROMPT_BUDGET",
    "PROMPT_LAYOUT",
    "AccessDenied",
    "BadRequest",
    "InvalidName",
    "Limits",
    "NoMemory",
    "QuotaExceeded",
    "Read",
    "ReadOptions",
    "Service",
    "TooMuchWork",
    "bounded",
    "normal_name",
    "parse_episode",
    "service_of",
    "version_tag",
]
