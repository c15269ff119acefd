"""Four agents, one playbook: agent processes send episodes to one ACE service on PostgreSQL, two worker processes
learn from them, and one worker is killed mid-episode on the way. At the end it checks what the service promises:
every episode processed exactly once (done, none failed, at most one version per episode, the killed one's episode
taken over), every version of the playbook verifies, and it prints the figures.

``python examples/multi_agent/run.py --db postgresql+psycopg://USER:PW@127.0.0.1:5432/DB [--episodes 200]``

(`scripts/postgres-up` prints such a URL for a local server.) The service runs with ``--workers 0``; the two
``ace worker`` processes use the local model with ``--curation facts``. Everything runs on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ace.service.queue import EpisodeQueue, episodes
from ace.store import PlaybookStore
from ace.store import schema as t

HERE = Path(__file__).resolve().parent
NAMESPACE, PLAYBOOK = "coop", "house-rules"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", default=os.environ.get("ACE_DB"), help="a PostgreSQL URL (or $ACE_DB)")
    ap.add_argument("--episodes", type=int, default=200, help="episodes in all, shared among the agents")
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kill-after", type=int, default=10, help="kill a worker once this many episodes are done")
    ap.add_argument("--lease", type=float, default=15.0, help="seconds before a dead worker's episode is retaken")
    ap.add_argument("--provider", default="local")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = ap.parse_args()
    if not args.db:
        ap.error("--db is needed (a PostgreSQL URL: several processes share the store)")
    if args.episodes % args.agents:
        ap.error("--episodes must be a multiple of --agents")
    store = PlaybookStore(args.db)
    queue = EpisodeQueue(store)
    if store.list(NAMESPACE) or queue.counts(namespace=NAMESPACE)["done"]:
        print(f"{args.db} already has namespace {NAMESPACE!r}: use an empty database", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="ace-multi-agent-"))
    token = secrets.token_urlsafe(24)
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({"tokens": {token: {"namespaces": [NAMESPACE], "role": "write"}}}))
    env = {**os.environ, "XDG_DATA_HOME": str(work / "data")}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(cmd: list[str], log: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(cmd, env=env, stdout=(work / log).open("wb"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    ace = [sys.executable, "-m", "ace.cli"]
    worker_cmd = [*ace, "worker", "--db", args.db, "--provider", args.provider, "--curation", "facts"]
    # each worker's model gets its share of the cores: llama.cpp threads beyond them spin and run many times slower
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    worker_cmd += ["--lease", str(args.lease), "--threads", str(threads)]
    started = time.monotonic()
    try:
        spawn([*ace, "serve", "--db", args.db, "--port", str(port), "--tokens", str(tokens), "--workers", "0"],
              "serve.log")  # fmt: skip
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/v1/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        workers = [spawn(worker_cmd, f"worker-{i}.log") for i in range(args.workers)]
        per_agent = args.episodes // args.agents
        agent_cmd = [sys.executable, str(HERE / "agent.py"), "--url", url, "--token", token]
        agent_cmd += ["--of", str(args.agents), "--episodes", str(per_agent)]
        agents = [spawn([*agent_cmd, "--agent", str(i)], f"agent-{i}.log") for i in range(args.agents)]
        killed: dict[str, Any] | None = None
        while any(a.poll() is None for a in agents):
            if killed is None and queue.counts(namespace=NAMESPACE)["done"] >= args.kill_after:
                running = [e for e in queue.list(namespace=NAMESPACE, status="running") if e.worker]
                if running:  # kill the worker that holds this episode, mid-episode, and start a new one
                    name = str(running[0].worker)
                    victim = next(w for w in workers if w.pid == int(name.split(":")[1]))
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    workers.append(spawn(worker_cmd, f"worker-{len(workers)}.log"))
                    # what it held when it died (it may have finished that one and taken the next meanwhile)
                    held = [e for e in queue.list(namespace=NAMESPACE, status="running") if e.worker == name]
                    if held:
                        killed = {"episode": held[0].episode_id, "worker": name}
                        print(f"killed worker {name} while it held episode {held[0].episode_id}", flush=True)
                    else:
                        print(f"killed worker {name} between two episodes: trying again", flush=True)
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        failed_agents = [i for i, a in enumerate(agents) if a.returncode != 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    # -- what the service promised ------------------------------------------------------------------------------
    rows = queue.list(namespace=NAMESPACE, limit=args.episodes + 10)
    counts = queue.counts(namespace=NAMESPACE)
    with store.transaction() as conn:
        keys = [k for (k,) in conn.execute(select(t.versions.c.key).where(t.versions.c.key.like("episode-%"))).all()]
        attempts = conn.execute(select(func.sum(episodes.c.attempts))).scalar_one()
    committed = sum(bool(e.committed) for e in rows)
    if not store.list(NAMESPACE):
        print(f"no playbook was learned: see the logs in {work}", file=sys.stderr)
        return 1
    head = store.head(PLAYBOOK, namespace=NAMESPACE)
    verified = store.verify(PLAYBOOK, namespace=NAMESPACE)
    retaken = [e.episode_id for e in rows if e.attempts > 1]
    lines = [json.loads(x) for i in range(args.agents) for x in (work / f"agent-{i}.log").read_text().splitlines()
             if x.startswith("{")]  # fmt: skip
    lines.sort(key=lambda r: (r["n"], r["agent"]))
    quarter = max(1, len(lines) // 4)
    first = sum(r["correct"] for r in lines[:quarter]) / quarter
    last = sum(r["correct"] for r in lines[-quarter:]) / quarter
    figures = {
        "episodes": len(rows),
        "statuses": counts,
        "attempts": attempts,
        "retaken": retaken,
        "killed": killed,
        "versions_from_episodes": len(keys),
        "distinct_episode_keys": len({k.split(":")[0] for k in keys}),
        "committed_episodes": committed,
        "head": head.version,
        "bullets": head.n_bullets,
        "verified_versions": verified,
        "accuracy_first_quarter": round(first, 3),
        "accuracy_last_quarter": round(last, 3),
        "seconds": round(elapsed, 1),
        "agents_failed": failed_agents,
        "logs": str(work),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    ok = (
        len(rows) == args.episodes
        and counts["done"] == args.episodes
        and len(keys) == len(set(keys)) == committed  # one version per episode that learned something, none twice
        and len({k.split(":")[0] for k in keys}) == len(keys)
        and verified == head.version
        and not failed_agents
        and killed is not None
        and killed["episode"] in retaken
    )
    print("OK: every episode processed exactly once, every version verifies" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
