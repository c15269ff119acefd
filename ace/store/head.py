"""The materialized head: the head version of each playbook kept as rows (:mod:`ace.store.schema`), so that a commit
reads and writes O(delta) and a load reads rows instead of replaying the log.

One row per bullet (its canonical JSON and that text's digest), the sections in order, each section's order in
chunks of ids, and the head's own row (version, counter, the digest's two parts). :func:`materialize` writes all of
it (O(n)); :func:`write_patch` brings it forward by what a delta changed; :func:`fetch` reads the bullets a delta
names, each checked against its row's digest; :func:`read` reads the whole head back, checked against the digest
recorded for its version. A row that does not hold what its digest says raises :class:`HeadDamaged` (a commit
rebuilds the head from the log) or, for :func:`read`, :class:`~ace.store.errors.CorruptRow`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from ace.playbook.delta import Patch
from ace.playbook.model import ORDER_SEP, Bullet, Playbook, Section, digest_of, order_hash_of, without_id
from ace.store import schema as t
from ace.store.errors import CorruptRow, StoreError


@dataclass(slots=True)
class Head:
    """The materialized head's own row and its sections (name -> slug, in order), without the bullets."""

    version: int
    next_id: int
    n_bullets: int
    content_sum: int
    order_hash: bytes
    sections: dict[str, str]


class HeadDamaged(StoreError):
    """Internal: a row of the materialized head does not hold what its digest says (edited by hand): a commit
    rebuilds the head from the log instead."""


def head_row(conn: Connection, pid: int) -> Any:
    """The head's own row of playbook ``pid`` (None if it has no materialized head)."""
    return conn.execute(select(t.heads).where(t.heads.c.playbook_id == pid)).one_or_none()


def current(conn: Connection, row: Any) -> Head | None:
    """The materialized head of playbook ``row`` if it holds the head version, else None (rebuild it)."""
    h = conn.execute(select(t.heads).where(t.heads.c.playbook_id == row.id)).one_or_none()
    if h is None or h.version != row.head:
        return None
    secs = conn.execute(
        select(t.head_sections.c.name, t.head_sections.c.slug)
        .where(t.head_sections.c.playbook_id == row.id)
        .order_by(t.head_sections.c.position)
    ).all()
    try:
        return Head(h.version, h.next_id, h.n_bullets, int(h.content_sum, 16), bytes.fromhex(h.order_hash), dict(secs))
    except ValueError:  # a digest part edited into something that is not hex
        return None


def fetch(conn: Connection, pid: int, ids: Any) -> dict[str, Bullet]:
    """The head's bullets among ``ids``, each checked against its row's digest (raises :class:`HeadDamaged`)."""
    found: dict[str, Bullet] = {}
    ids = list(ids)
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(
                t.head_bullets.c.bullet_id, t.head_bullets.c.section, t.head_bullets.c.data, t.head_bullets.c.digest
            ).where(t.head_bullets.c.playbook_id == pid, t.head_bullets.c.bullet_id.in_(ids[start : start + 500]))
        ).all()
        for r in rows:
            found[r.bullet_id] = bullet_from_row(r.bullet_id, r.section, r.data, r.digest)
    return found


def materialize(conn: Connection, pid: int, version: int, pb: Playbook) -> tuple[Head, dict[str, str]]:
    """Write ``pb`` as the materialized head of playbook ``pid`` at ``version`` (all rows replaced): O(n).
    Returns the head and each bullet's row text (its canonical JSON)."""
    for table in (t.head_bullets, t.head_order, t.head_sections, t.heads):
        conn.execute(delete(table).where(table.c.playbook_id == pid))
    sections = list(pb.sections.values())
    if sections:
        conn.execute(
            insert(t.head_sections),
            [{"playbook_id": pid, "position": k, "name": s.name, "slug": s.slug} for k, s in enumerate(sections)],
        )
    chunks = [
        {"playbook_id": pid, "position": k, "chunk": c, "ids": ORDER_SEP.join(s.ids[start : start + t.HEAD_CHUNK])}
        for k, s in enumerate(sections)
        for c, start in enumerate(range(0, len(s), t.HEAD_CHUNK))
    ]
    if chunks:
        conn.execute(insert(t.head_order), chunks)
    rows = [row_of(pid, b) for b in pb]
    for start in range(0, len(rows), 5000):
        conn.execute(insert(t.head_bullets), rows[start : start + 5000])
    head = Head(version, pb.next_id, len(pb), pb.content_sum(), pb.order_hash(), {s.name: s.slug for s in sections})
    conn.execute(insert(t.heads).values(playbook_id=pid, **head_values(head)))
    return head, {r["bullet_id"]: r["data"] for r in rows}


def write_patch(
    conn: Connection, pid: int, version: int, head: Head, patch: Patch, pb: Playbook | None
) -> tuple[str, int]:
    """Bring the materialized head from ``head`` to ``version`` by ``patch``: the rows the delta changed, the
    orders of the sections it reordered, the head's row. Returns the new version's digest and size."""
    added: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    gone: list[str] = []
    for i, old in patch.before.items():
        cur = patch.after.get(i)
        if cur is None:
            if old is not None:
                gone.append(i)
        else:
            (added if old is None else changed).append(row_of(pid, cur))
    if gone:
        for start in range(0, len(gone), 500):
            conn.execute(
                delete(t.head_bullets).where(
                    t.head_bullets.c.playbook_id == pid, t.head_bullets.c.bullet_id.in_(gone[start : start + 500])
                )
            )
    if added:
        conn.execute(insert(t.head_bullets), added)
    if changed:
        conn.execute(
            update(t.head_bullets)
            .where(t.head_bullets.c.playbook_id == pid, t.head_bullets.c.bullet_id == bindparam("b_id"))
            .values(section=bindparam("b_section"), data=bindparam("b_data"), digest=bindparam("b_digest")),
            [
                {"b_id": r["bullet_id"], "b_section": r["section"], "b_data": r["data"], "b_digest": r["digest"]}
                for r in changed
            ],
        )
    order_hash, sections = head.order_hash, head.sections
    if patch.order_changed:
        order_hash, sections = _reorder(conn, pid, head, patch)
    content_sum = patch.content_sum(head.content_sum)
    new = Head(version, patch.next_id, patch.n_bullets, content_sum, order_hash, sections)
    conn.execute(update(t.heads).where(t.heads.c.playbook_id == pid).values(**head_values(new)))
    digest = digest_of(new.next_id, order_hash, content_sum)
    if pb is not None:  # the digest's parts, so that the held playbook need not rehash its order
        pb.set_derived("order_hash", order_hash, keep=True)
        pb.set_derived("content_sum", content_sum, keep=True)
    return digest, new.n_bullets


def _reorder(conn: Connection, pid: int, head: Head, patch: Patch) -> tuple[bytes, dict[str, str]]:
    """Apply the patch's order events to the sections' stored orders, rewriting only the chunks they change;
    returns the new order hash (which hashes every section's order: O(n) bytes read and hashed, in C) and the
    sections (name -> slug) with the ones the patch created."""
    positions = {name: k for k, name in enumerate(head.sections)}
    chunks: dict[int, list[_Chunk]] = {k: [] for k in positions.values()}
    for r in conn.execute(
        select(t.head_order.c.position, t.head_order.c.chunk, t.head_order.c.ids)
        .where(t.head_order.c.playbook_id == pid)
        .order_by(t.head_order.c.position, t.head_order.c.chunk)
    ):
        chunks.setdefault(r.position, []).append(_Chunk(r.chunk, r.ids, stored=True))
    sections = dict(head.sections)
    if patch.new_sections:
        conn.execute(
            insert(t.head_sections),
            [
                {"playbook_id": pid, "position": len(sections) + k, "name": name, "slug": slug}
                for k, (name, slug) in enumerate(patch.new_sections)
            ],
        )
        for name, slug in patch.new_sections:
            positions[name] = len(sections)
            sections[name] = slug
            chunks[positions[name]] = []
    for kind, sec, bullet_id in patch.order:
        if sec not in positions:
            raise HeadDamaged(f"section {sec!r} is missing from the stored sections")
        held = chunks[positions[sec]]
        if kind == "+":
            if held and held[-1].ids and held[-1].ids.count(ORDER_SEP) + 1 < t.HEAD_CHUNK:
                held[-1].ids, held[-1].dirty = f"{held[-1].ids}{ORDER_SEP}{bullet_id}", True
            elif held and not held[-1].ids:
                held[-1].ids, held[-1].dirty = bullet_id, True
            else:
                held.append(_Chunk(held[-1].number + 1 if held else 0, bullet_id, dirty=True))
            continue
        for c in held:
            if (rest := without_id(c.ids, bullet_id)) is not None:
                c.ids, c.dirty = rest, True
                break
        else:
            raise HeadDamaged(f"bullet {bullet_id!r} is missing from its section's stored order")
    for position, held in chunks.items():
        for c in held:
            if not c.dirty:
                continue
            key = (t.head_order.c.playbook_id == pid) & (t.head_order.c.position == position)
            key &= t.head_order.c.chunk == c.number
            if not c.ids and c is not held[-1]:  # an emptied chunk goes (the last one stays, to append to)
                if c.stored:
                    conn.execute(delete(t.head_order).where(key))
            elif c.stored:
                conn.execute(update(t.head_order).where(key).values(ids=c.ids))
            else:
                conn.execute(insert(t.head_order).values(playbook_id=pid, position=position, chunk=c.number, ids=c.ids))
    order_hash = order_hash_of(
        (name, slug, ORDER_SEP.join(c.ids for c in chunks[positions[name]] if c.ids)) for name, slug in sections.items()
    )
    return order_hash, sections


def read(conn: Connection, pid: int, version: int, h: Any) -> Playbook:
    """The head read from its materialized rows (``h``: the head's own row, at ``version``), checked: every row
    parses and holds the bullet it is filed under with the digest it records, every bullet is in its section's
    order, and the whole hashes to the digest recorded for ``version``. Raises :class:`CorruptRow` otherwise."""
    secs = conn.execute(
        select(t.head_sections.c.position, t.head_sections.c.name, t.head_sections.c.slug)
        .where(t.head_sections.c.playbook_id == pid)
        .order_by(t.head_sections.c.position)
    ).all()
    orders: dict[int, list[str]] = {}
    for position, chunk in conn.execute(
        select(t.head_order.c.position, t.head_order.c.ids)
        .where(t.head_order.c.playbook_id == pid)
        .order_by(t.head_order.c.position, t.head_order.c.chunk)
    ):
        if chunk:
            orders.setdefault(position, []).append(chunk)
    rows = conn.execute(
        select(
            t.head_bullets.c.bullet_id, t.head_bullets.c.section, t.head_bullets.c.data, t.head_bullets.c.digest
        ).where(t.head_bullets.c.playbook_id == pid)
    ).all()
    data = CorruptRow.decoding(lambda: json.loads("[" + ",".join(r.data for r in rows) + "]")) if rows else []
    if not isinstance(data, list) or len(data) != len(rows):
        raise CorruptRow("a row's data is not one JSON object")
    by_id: dict[str, Bullet] = {}
    for r, d in zip(rows, data, strict=True):
        if not isinstance(d, dict) or d.get("id") != r.bullet_id or d.get("section") != r.section:
            raise CorruptRow(f"the row of {r.bullet_id!r} holds another bullet")
        # each row's digest is the hash of its text; their sum must make the digest recorded for the version
        # (checked below), so an edited row is found without serializing every bullet again
        try:
            b = by_id[r.bullet_id] = Bullet.from_canonical(d, r.data)
        except (ValueError, TypeError, KeyError) as e:  # a field missing or of a type the model cannot take
            raise CorruptRow(e) from e
        if b.digest().hex() != r.digest:  # what a commit that touches it would check
            raise CorruptRow(f"the row of {r.bullet_id!r} does not match its digest")
    sections: dict[str, Section] = {}
    placed = 0
    for s in secs:
        ids = ORDER_SEP.join(orders.pop(s.position, [])).split(ORDER_SEP) if s.position in orders else []
        if any(by_id.get(i) is None or by_id[i].section != s.name for i in ids):
            raise CorruptRow(f"section {s.name!r} orders a bullet it does not hold")
        placed += len(ids)
        sections[s.name] = Section(s.name, s.slug, ids)
    if placed != len(by_id) or orders:
        raise CorruptRow("a bullet is in no section's order")
    pb = Playbook(sections, by_id, h.next_id)
    recorded = conn.execute(
        select(t.versions.c.digest).where(t.versions.c.playbook_id == pid, t.versions.c.version == version)
    ).scalar_one_or_none()
    if pb.digest() != recorded:
        raise CorruptRow(f"its rows hash to {pb.digest()[:12]}, but {str(recorded)[:12]} was recorded")
    return pb


def agrees(head: Head, pb: Playbook) -> bool:
    """Whether the materialized head's row describes ``pb`` (the head this store holds), as far as it tells
    without reading every bullet."""
    return (
        head.next_id == pb.next_id
        and head.n_bullets == len(pb)
        and pb.peek_derived("content_sum", head.content_sum) == head.content_sum
        and pb.peek_derived("order_hash", head.order_hash) == head.order_hash
        and list(head.sections.items()) == [(s.name, s.slug) for s in pb.sections.values()]
    )


def row_of(pid: int, b: Bullet) -> dict[str, Any]:
    """The materialized head's row of ``b``: its canonical JSON (what its digest hashes) and that digest."""
    data, digest = b.canonical_with_digest()
    return {"playbook_id": pid, "bullet_id": b.id, "section": b.section, "data": data, "digest": digest.hex()}


def bullet_from_row(bullet_id: str, section: str, data: str, digest: str) -> Bullet:
    """A row of the materialized head read back, checked: it parses, it is the bullet it is filed under, and its
    text is the canonical form of the bullet it holds with the digest the row records."""
    try:
        d = json.loads(data)
        ours = isinstance(d, dict) and d.get("id") == bullet_id and d.get("section") == section
        b = Bullet.from_dict(d) if ours else None
    except (ValueError, TypeError) as e:
        raise HeadDamaged(f"the row of bullet {bullet_id!r} does not parse ({str(e)[:80]})") from None
    if b is None:
        raise HeadDamaged(f"the row of bullet {bullet_id!r} does not parse (it holds another bullet)")
    if b.canonical() != data or b.digest().hex() != digest:
        raise HeadDamaged(f"the row of bullet {bullet_id!r} does not match its digest")
    return b


def head_values(head: Head) -> dict[str, Any]:
    return {
        "version": head.version,
        "next_id": head.next_id,
        "n_bullets": head.n_bullets,
        "content_sum": f"{head.content_sum:064x}",
        "order_hash": head.order_hash.hex(),
    }


@dataclass(slots=True)
class _Chunk:
    """One stored chunk of a section's order while a patch is applied to it."""

    number: int
    ids: str
    stored: bool = False
    dirty: bool = False
