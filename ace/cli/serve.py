"""``ace serve`` (the HTTP service over the store, :mod:`ace.service`) and ``ace worker`` (learns from the episodes
sent to it)."""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ace.cli.options import MAX_INT, MAX_REPLY_TOKENS, DbOpt
from ace.cli.output import out
from ace.llm.injection_probe import with_probe
from ace.service.auth import TOKEN_ENV, Tokens
from ace.store import PlaybookStore
from ace.store.engine import shown_url

if TYPE_CHECKING:
    from ace.governance.duty import TrialDuty
    from ace.service.worker import Worker

MAX_THREADS = 1024  # workers, processes or model threads per command: more is a typo (each one costs memory)
ProviderOpt = Annotated[str, typer.Option(help="LLM of the workers: 'local', 'anthropic:MODEL', 'openai:MODEL[@URL]'.")]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory",
        help="Episodic memory: a Chroma directory or server URL ('default': <data dir>/chroma), or a PostgreSQL URL "
        "(pgvector; the --db URL keeps one database). Workers write each episode there, and /v1/memory/{ns}/episodes "
        "searches it. Several processes need a server URL.",
    ),
]
LeaseOpt = Annotated[
    float,
    typer.Option(
        min=2.0,
        max=7 * 86400.0,
        help="Seconds an episode stays a worker's without a renewal (renewed every third).",
    ),
]
MaxTokensOpt = Annotated[
    int, typer.Option(min=16, max=MAX_REPLY_TOKENS, help="Token limit of each LLM reply of the workers.")
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_THREADS,
        help="CPU threads of each worker's local model (default: $ACE_LOCAL_THREADS, else up to 4). Give several "
        "workers on one machine a share of the cores each: oversubscribed llama.cpp threads run many times slower.",
    ),
]
CurationOpt = Annotated[
    str,
    typer.Option(
        help="'free' (the paper's reflection and curator delta) or 'facts' (copy-friendly lessons; suits the small "
        "local model)."
    ),
]


def _checked_memory(memory: str | None) -> str | None:
    """:func:`_memory_location`, and a PostgreSQL one checked before any worker starts: reachable, with the pgvector
    extension (created now if this role may). A role that may not create it is refused at start-up, not in every
    episode."""
    location = _memory_location(memory)
    if location is not None:
        from ace.memory.pgvector import check_writable, is_postgres_url

        if is_postgres_url(location):
            check_writable(location)
    return location


def _memory_location(memory: str | None) -> str | None:
    if memory is None:
        return None
    if memory == "default":
        from ace.runs.workspace import data_dir

        return str(data_dir() / "chroma")
    return memory


def _workers(
    store: PlaybookStore,
    n: int,
    provider: str,
    memory: str | None,
    lease: float,
    max_tokens: int,
    curation: str,
    threads: int | None = None,
    trials: TrialDuty | None = None,
) -> list[Worker]:
    from ace.config import LoopConfig
    from ace.llm import LLM, Sampling
    from ace.runs.workspace import runs_dir
    from ace.service.queue import EpisodeQueue
    from ace.service.worker import Worker, worker_name

    if curation not in ("free", "facts"):
        raise typer.BadParameter("--curation is 'free' or 'facts'")
    if n > 0:
        _check_provider(provider, threads)
    queue = EpisodeQueue(store, lease_s=lease)
    tiers = _tiers(store, memory)
    return [
        Worker(
            store,
            queue,
            llm=lambda: LLM(_provider(provider, threads), sampling=Sampling(max_tokens=max_tokens)),
            workdir=runs_dir() / "episodes",
            name=worker_name(str(i)),
            memory=tiers,
            config=LoopConfig(curation="facts" if curation == "facts" else "free"),
            trials=None if trials is None else replace(trials),  # each worker its own poll clock
        )
        for i in range(n)
    ]


def _check_provider(spec: str, threads: int | None) -> None:
    """Refuse to start workers on a provider that cannot answer: an unknown spec, a script that does not load, a
    local model file that is not there (each episode would fail on it otherwise, one after the other)."""
    from ace.errors import ConfigError
    from ace.llm import LLMError, get_provider
    from ace.llm.local import LocalProvider

    try:
        found = get_provider(_provider(spec, threads))
        if isinstance(found, LocalProvider):
            found.check()
    except LLMError as e:
        raise ConfigError(f"--provider {spec}: {e}") from None


def _provider(spec: str, threads: int | None) -> Any:
    """The provider of a spec, with ``threads`` for a local model."""
    kind, _, rest = spec.partition(":")
    if kind == "local" and threads:
        from ace.llm.local import LocalProvider

        return LocalProvider(model_path=rest or None, n_threads=threads)
    return spec


def _tiers(store: PlaybookStore, location: str | None) -> Any:
    """A namespace's memory tiers at ``location`` (made once per namespace, shared by the workers), or None."""
    if location is None:
        return None
    from ace.memory import Memory, MemoryConfig

    made: dict[str, Memory] = {}
    lock = threading.Lock()
    http = location.startswith(("http://", "https://"))

    def tiers(namespace: str) -> Memory:
        with lock:
            if namespace not in made:
                made[namespace] = Memory.local(
                    store,
                    location,
                    namespace=namespace,
                    chroma_url=location if http else None,
                    config=MemoryConfig(short_term=False),
                )
            return made[namespace]

    return tiers


def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    tokens: Annotated[
        Path | None, typer.Option(help=f"Tokens file (JSON or TOML); default: ${TOKEN_ENV}.", dir_okay=False)
    ] = None,
    max_body: Annotated[int, typer.Option(min=1024, help="Largest request body accepted, in bytes.")] = 1 << 20,
    workers: Annotated[
        int,
        typer.Option(
            min=0, max=MAX_THREADS, help="Worker threads learning from sent episodes (0: leave it to `ace worker`)."
        ),
    ] = 1,
    provider: ProviderOpt = "local",
    memory: MemoryOpt = None,
    lease: LeaseOpt = 120.0,
    max_tokens: MaxTokensOpt = 512,
    curation: CurationOpt = "free",
    threads: ThreadsOpt = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_THREADS, help="Processes answering requests (uvicorn workers; the workers stay in this one)."
        ),
    ] = 1,
) -> None:
    """Serve playbooks over HTTP: read (rendered under a budget, as JSON or exported), apply deltas with If-Match,
    import, rollback, history, diff, blame, check; queue episodes for workers to learn from; search memory. Each
    request is checked against a bearer token's namespaces and role. OpenAPI docs at /docs."""
    import json
    import os

    from ace.app.console_report import report_html  # the console's run reports: ace report's page
    from ace.service import server as uv
    from ace.service.app import SERVE_ENV, create_app, episodic_tiers  # FastAPI loads only when serving
    from ace.service.worker import WorkerPool

    table = Tokens.load(tokens)
    store = PlaybookStore(db, policy=with_probe())
    location = _checked_memory(memory)
    pool = WorkerPool(_workers(store, workers, provider, location, lease, max_tokens, curation, threads)).start()
    out.print(
        f"ace serve: {shown_url(store.url)} on http://{host}:{port} ({len(table)} token(s), {processes} "
        f"process(es), {workers} worker(s) on {provider}{', memory ' + shown_url(location) if location else ''}); "
        "docs at /docs"
    )
    try:
        if processes == 1:
            app = create_app(store, table, max_body_bytes=max_body, episodes=episodic_tiers(location),
                             run_report=report_html)  # fmt: skip
            uv.run(app, host=host, port=port, log_level="warning")
        else:  # each process builds the same application from $ACE_SERVE (ace.service.app.from_environment)
            settings = {"db": store.url, "tokens": None if tokens is None else str(tokens.resolve()),
                        "max_body": max_body, "memory": location}  # fmt: skip
            os.environ[SERVE_ENV] = json.dumps(settings)
            uv.run("ace.service.app:from_environment", factory=True, processes=processes, host=host, port=port,
                   log_level="warning")  # fmt: skip
    finally:
        pool.stop(timeout=5)


def worker(
    db: DbOpt = None,
    provider: ProviderOpt = "local",
    memory: MemoryOpt = None,
    lease: LeaseOpt = 120.0,
    max_tokens: MaxTokensOpt = 512,
    curation: CurationOpt = "free",
    threads: ThreadsOpt = None,
    max_episodes: Annotated[int | None, typer.Option(min=1, help="Stop after this many episodes.")] = None,
    drain: Annotated[
        bool,
        typer.Option("--drain", help="Stop when no episode is queued (those waiting out a retry's backoff count)."),
    ] = False,
    trials: Annotated[
        bool,
        typer.Option(
            "--trials",
            help="When no episode waits, run the matched trials that gated playbooks are due "
            "(ace playbook lane; their candidate --trial-every versions past the last trial's, or a "
            "trial that stopped).",
        ),
    ] = False,
    trial_every: Annotated[
        int, typer.Option(min=1, max=MAX_INT, help="Versions past the last trial's candidate before the next trial.")
    ] = 10,
    trial_budget: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_INT, help="Tokens a trial may spend per go (it goes on at the next go)."),
    ] = None,
) -> None:
    """Learn from the episodes sent to `ace serve` (the same --db): claim one under a lease, reflect, curate,
    guard and commit through the loop, mark it done; run several on PostgreSQL to share the work. With --trials,
    the worker also runs gated playbooks' trials when the queue is empty."""
    from ace.governance.duty import TrialDuty

    store = PlaybookStore(db, policy=with_probe())
    duty = TrialDuty(every=trial_every, budget_tokens=trial_budget) if trials else None
    (w,) = _workers(store, 1, provider, _checked_memory(memory), lease, max_tokens, curation, threads, duty)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out.print(f"ace worker {w.name}: {shown_url(store.url)}, provider {provider}")
    handled = 0
    try:
        while not stop.is_set() and (max_episodes is None or handled < max_episodes):
            episode = w.run_once()
            if episode is None:
                if drain and w.queue.counts()["queued"] == 0:
                    break
                stop.wait(w.poll_s)
                continue
            handled += 1
            shown = f"v{episode.version}" if episode.committed else (episode.error or "no change")
            out.print(f"{episode.namespace}/{episode.playbook} episode {episode.episode_id}: {episode.status}, {shown}")
    except KeyboardInterrupt:
        pass
    out.print(f"ace worker {w.name}: {handled} episode(s)")


def mcp(
    db: DbOpt = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="The namespace a stdio client reads and writes.")
    ] = "default",
    transport: Annotated[str, typer.Option(help="'stdio' (a desktop client starts it) or 'http' (streamable).")] = (
        "stdio"
    ),
    host: Annotated[str, typer.Option(help="Address to listen on over HTTP (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8001,
    tokens: Annotated[
        Path | None,
        typer.Option(help=f"Tokens file for HTTP (JSON or TOML); default: ${TOKEN_ENV}.", dir_okay=False),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=0, max=MAX_THREADS, help="Worker threads learning from recorded episodes.")
    ] = 1,
    provider: ProviderOpt = "local",
    memory: MemoryOpt = None,
    lease: LeaseOpt = 120.0,
    max_tokens: MaxTokensOpt = 512,
    curation: CurationOpt = "free",
    threads: ThreadsOpt = None,
) -> None:
    """Serve the playbook and memory as a Model Context Protocol server: tools to read the playbook under a token
    budget, record an episode to learn from, see its status, search episodes and query facts; resources for
    playbook versions. Over HTTP each request needs a bearer token from the tokens file."""
    import sys

    from ace.service.app import episodic_tiers
    from ace.service.mcp import create_server
    from ace.service.worker import WorkerPool

    if transport not in ("stdio", "http"):
        raise typer.BadParameter("--transport is 'stdio' or 'http'")
    table = Tokens.load(tokens) if transport == "http" else None
    store = PlaybookStore(db, policy=with_probe())
    location = _memory_location(memory)
    server = create_server(
        store, namespace=namespace, tokens=table, url=f"http://{host}:{port}", episodes=episodic_tiers(location)
    )
    pool = WorkerPool(_workers(store, workers, provider, location, lease, max_tokens, curation, threads)).start()
    # stdout is the protocol's channel over stdio: say what runs on stderr
    print(f"ace mcp: {shown_url(store.url)} over {transport}, {workers} worker(s) on {provider}", file=sys.stderr)
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            from ace.service import server as uv
            from ace.service.mcp import http_app

            uv.run(http_app(server, host=host), host=host, port=port, log_level="warning")
    finally:
        pool.stop(timeout=5)
