"""``ace memory episodes|facts``: what the memory tiers hold, per namespace.

- ``episodes``: the episodic tier (ChromaDB, or pgvector at a PostgreSQL URL): the most recent episodes, or with a
  QUERY the most similar ones (embedded with the offline MiniLM model), with their outcome and lesson. A read: it
  makes no directory, database, collection or table; a server that cannot be reached is one line, exit status 1.
- ``facts``: the knowledge graph (in the store's database): current facts, or every fact with its validity
  (``--all``), optionally for one subject and relation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from ace.app.console import add_row, table
from ace.cli.options import DbOpt, JsonOpt, NsOpt
from ace.cli.output import AceTyper, open_store, out, print_json
from ace.errors import AceError, ConfigError
from ace.runs.workspace import data_dir
from ace.store import DEFAULT_NAMESPACE
from ace.store.engine import shown_url

if TYPE_CHECKING:
    from ace.memory.episodic import EpisodicTier

app = AceTyper(
    help="What the memory tiers hold: episodes (Chroma or pgvector) and knowledge-graph facts.", no_args_is_help=True
)

ChromaOpt = Annotated[
    str | None,
    typer.Option(
        "--memory",
        "--chroma",
        help="Where the episodes are, as ace serve --memory takes it: a Chroma directory or server URL, or a "
        "PostgreSQL URL (pgvector). Default: <data dir>/chroma, where ace demo --memory writes.",
    ),
]


@app.command()
def episodes(
    query: Annotated[str | None, typer.Argument(help="Show the episodes most similar to this text.")] = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    chroma: ChromaOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-k", min=1, max=1000, help="How many episodes.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """List the namespace's episodes, newest first, or those most similar to QUERY."""
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.memory.episodic import NoEpisodicMemory
    from ace.memory.tiers import open_episodic

    location = chroma or str(data_dir() / "chroma")
    embedder = MiniLMEmbedder()
    try:
        store = _open_episodes(location, lambda: open_episodic(location, embedder, namespace=namespace, create=False))
    except NoEpisodicMemory as missing:
        if chroma:  # a location the user named: a mistake
            raise
        if as_json:
            print_json([])
        else:
            out.print(str(missing))  # the default one: nothing recorded yet
        return
    if as_json:
        if query:
            hits = store.search(query, k=limit)
            print_json([{**asdict(h.episode), "similarity": round(h.similarity, 4)} for h in hits])
        else:
            print_json([asdict(e) for e in store.recent(limit)])
        return
    t = table("episode", "when (UTC)", "outcome", "task", "lesson", *(["similarity"] if query else []))
    if query:
        for hit in store.search(query, k=limit):
            e = hit.episode
            add_row(t, e.id, _when(e.created_at), e.outcome, e.task[:80], e.reflection[:80], f"{hit.similarity:.2f}")
    else:
        for e in store.recent(limit):
            add_row(t, e.id, _when(e.created_at), e.outcome, e.task[:80], e.reflection[:80])
    out.print(t)
    from ace.memory.pgvector import is_postgres_url, shown

    where = shown(location) if is_postgres_url(location) else location  # a database's password is not shown
    out.print(f"{store.count()} episode(s) in namespace {namespace!r} at {where}")


@app.command()
def facts(
    subject: Annotated[str | None, typer.Option(help="Only facts about this subject.")] = None,
    relation: Annotated[str | None, typer.Option(help="Only this relation (with --subject: its history).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Superseded facts too, with their validity.")] = False,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
) -> None:
    """List the knowledge graph's facts: current ones, or all with the versions they held for."""
    from ace.memory import KnowledgeGraph

    found = KnowledgeGraph(open_store(db), namespace=namespace).query(subject, relation, history=all_)
    if as_json:
        print_json([asdict(f) for f in found])
        return
    t = table("subject", "relation", "object", "valid (versions)", "episode")
    for f in found:
        valid = f"v{f.valid_from}–" + (f"v{f.valid_to}" if f.valid_to is not None else "now")
        add_row(t, f.subject, f.relation, f.object, valid, f.episode or "")
    out.print(t)
    out.print(f"{len(found)} fact(s) in namespace {namespace!r}")


def _open_episodes(location: str, open_: Callable[[], EpisodicTier]) -> EpisodicTier:
    """``open_()``; a Chroma server that cannot be reached (or is no Chroma server) says so in one line."""
    if not location.startswith(("http://", "https://")):
        return open_()
    import httpx
    from chromadb.errors import ChromaError

    try:
        return open_()
    except AceError:
        raise
    except (ValueError, OSError, httpx.HTTPError, ChromaError) as e:  # refused, unknown host, bad port, not Chroma
        detail = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)[:160]
        raise ConfigError(f"the Chroma server at {shown_url(location)} cannot be reached ({detail})") from None


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")
