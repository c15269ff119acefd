#!/usr/bin/env python
"""Playbook reads per second from ``ace serve`` on loopback, with their latency percentiles.

Starts ``ace serve`` (SQLite, the released AppWorld playbook imported as ``bench/appworld``) on a free port, then
drives it with ``wrk`` (Debian's package: a C load generator, so the client does not compete in Python) for
``--seconds`` with ``--connections`` connections on one thread, each request a rendered read under a token budget:
``GET /v1/playbooks/bench/appworld?budget=2000&layout=stable`` with a read token. Prints wrk's summary and the
latency distribution (p50 / p90 / p99).

    python benchmarks/service/bench_reads.py --seconds 30 --connections 16 [--processes 2] [--workers 1]

``--processes`` is ``ace serve --processes`` (uvicorn worker processes answering requests); ``--workers`` the
learning worker threads, idle here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ace.playbook import parse_ace
from ace.store import PlaybookStore

PLAYBOOK = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "playbooks"
    / "appworld_offline_trained_no_gt_playbook.txt"
)
TOKEN = "bench-read-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=1, help="ace serve's worker threads (idle here: no episodes)")
    ap.add_argument("--processes", type=int, default=1, help="ace serve's processes answering requests")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'serve.db'}"
        PlaybookStore(db).create("appworld", parse_ace(PLAYBOOK.read_text(encoding="utf-8")), namespace="bench")
        tokens = Path(tmp) / "tokens.json"
        tokens.write_text(json.dumps({"tokens": {TOKEN: {"namespaces": ["bench"], "role": "read"}}}))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "ACE_TOKENS"}
        cmd = [sys.executable, "-m", "ace.cli", "serve", "--db", db, "--port", str(port), "--tokens", str(tokens)]
        cmd += ["--workers", str(args.workers), "--processes", str(args.processes)]
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{base}/v1/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            url = f"{base}/v1/playbooks/bench/appworld?budget={args.budget}&layout=stable"
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                size = len(r.read())
            print(f"GET {url} -> {size} bytes; wrk {args.seconds} s, {args.connections} connections, 1 thread")
            out = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{args.connections}",
                    f"-d{args.seconds}s",
                    "--latency",
                    "-H",
                    f"Authorization: Bearer {TOKEN}",
                    url,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            print(out)
            if "Non-2xx" in out or "Socket errors" in out:
                sys.exit("some requests failed (see wrk's summary): the figure above does not count")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
