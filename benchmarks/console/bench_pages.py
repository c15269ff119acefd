#!/usr/bin/env python
"""How fast the console's pages answer on a large playbook: p50 and p95 per page, over a real uvicorn server.

Builds (once, kept at ``--db``) a SQLite store holding a playbook of ``--bullets`` bullets (10,000) with
``--versions`` versions (1,000: ADDs, UPDATEs, TAGs, REMOVEs and MERGEs with their sources), under the review
policy with the last ``--pending`` versions waiting, and ``--episodes`` episodes in its queue; serves it with
``create_app`` (the HTTP service with the console at /ui) on 127.0.0.1, signs in through the form, and times every
page ``--repeats`` times with one keep-alive connection, as a browser would ask for them: the whole answer (the
page's HTML), wall clock. Pages that name a version take a different one each time (``diff``, ``blame``,
``version``): no cache of the store's helps them. ``check`` is timed cold (its first call for a head) and then
cached, as the service caches it per head.

    python benchmarks/console/bench_pages.py                     # 10k bullets, 1,000 versions, 20 repeats
    python benchmarks/console/bench_pages.py --bullets 1000 --versions 100 --repeats 5
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvicorn

from ace.playbook import Delta
from ace.playbook.formats import parse_ace
from ace.service.app import create_app
from ace.service.auth import Grant, Tokens
from ace.service.core import Service
from ace.store import PlaybookStore

TOKEN = "bench-console-admin-token-0001"
NS, NAME = "bench", "big"
SECTIONS = ["STRATEGIES AND HARD RULES", "COMMON MISTAKES", "FORMULAS AND CALCULATIONS", "APIS TO USE"]


def build(url: str, bullets: int, versions: int, pending: int, episodes: int, seed: int = 0) -> PlaybookStore:
    """The store the pages are timed on (see the module doc)."""
    store = PlaybookStore(url)
    per = bullets // len(SECTIONS)
    lines = []
    for s, section in enumerate(SECTIONS):
        lines.append(f"## {section}")
        for i in range(per):
            k = s * per + i + 1
            lines.append(
                f"[b-{k:05d}] helpful={k % 7} harmful={k % 3} :: Rule {k}: when endpoint_{k % 97} returns a page, "
                f"loop over page_index until it is empty, then aggregate (account {k})."
            )
    store.create(NAME, parse_ace("\n".join(lines) + "\n"), namespace=NS, author="importer", force=True)
    rnd = random.Random(seed)
    alive = [f"b-{k:05d}" for k in range(1, per * len(SECTIONS) + 1)]
    svc, admin = Service(store), Grant.local("bench", role="admin")
    for v in range(2, versions + 1):
        if v == versions - pending + 1:
            svc.set_promotion(admin, NS, NAME, "review")  # serving stays where it is; the rest waits for review
        kind = v % 10
        k = rnd.randrange(len(alive))
        target = alive[k]
        if kind in (0, 5):
            lesson = f"Lesson {v}: check the currency of invoice {v} before summing."
            ops: list[dict[str, Any]] = [{"type": "ADD", "section": SECTIONS[v % 4], "content": lesson}]
        elif kind in (1, 6):
            rule = f"Rule {target}: when the endpoint returns a page, keep looping until empty (v{v})."
            ops = [{"type": "UPDATE", "id": target, "content": rule}]
        elif kind == 9 and len(alive) > 2:
            other = alive[(k + 1) % len(alive)]
            ops = [{"type": "MERGE", "ids": [target, other], "content": f"Merged rule {target} and {other} (v{v})."}]
        elif kind == 8:
            ops = [{"type": "REMOVE", "id": target}]
        else:
            ops = [{"type": "TAG", "id": target, "tag": "helpful" if kind % 2 else "harmful"}]
        source = {"task_id": f"q-{v}", "step": v, "run_id": "bench"}
        delta = Delta.parse(json.dumps({"operations": ops, "source": source}))
        applied = store.commit(NAME, delta, namespace=NS, author="curator", message=f"step {v}")
        for op in applied.delta.operations if applied.delta else []:
            if op.type == "ADD" and op.id:
                alive.append(op.id)
            elif op.type == "REMOVE":
                alive.remove(op.id)
            elif op.type == "MERGE":
                alive.remove(ops[0]["ids"][1])
    writer = Grant.local("agents", [NS])
    for i in range(episodes):
        episode = {"id": f"ep-{i}", "messages": [{"role": "user", "content": f"question {i}"},
                                                 {"role": "assistant", "content": "an answer"}]}  # fmt: skip
        svc.submit_episode(writer, NS, NAME, episode)
    store.flush()
    return store


class Server:
    """``app`` under uvicorn in a thread on a free port of 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Browser:
    """One keep-alive connection with the console's cookie, as a signed-in browser."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.origin = f"http://127.0.0.1:{port}"
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), "Origin": self.origin}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        text = response.read().decode("utf-8")
        for header in response.headers.get_all("set-cookie") or []:
            key, _, rest = header.partition("=")
            self.cookies[key] = rest.split(";")[0]
        return response.status, text

    def sign_in(self, token: str) -> None:
        _, form = self.request("GET", "/ui/login")
        nonce = re.search(r'name="csrf" value="([^"]+)"', form)
        assert nonce is not None
        status, _ = self.request("POST", "/ui/login", {"csrf": nonce.group(1), "token": token, "next": "/ui/"})
        assert status == 303, status


def timed(browser: Browser, paths: list[str]) -> list[float]:
    took = []
    for path in paths:
        start = time.perf_counter()
        status, text = browser.request("GET", path)
        took.append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise SystemExit(f"{path}: HTTP {status}: {text[:300]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bullets", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=1_000)
    parser.add_argument("--pending", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--db", type=Path, default=None, help="keep the store here (built when missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    where = args.db or Path(tempfile.mkdtemp()) / f"console-{args.bullets}-{args.versions}.db"
    url = f"sqlite:///{where}"
    if where.exists():
        store = PlaybookStore(url)
        print(f"store {where} (kept)", file=sys.stderr)
    else:
        start = time.perf_counter()
        store = build(url, args.bullets, args.versions, args.pending, args.episodes, args.seed)
        print(f"built {where} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    head = store.head(NAME, namespace=NS)
    touched = []  # bullets an UPDATE changed lately: blames with a history
    for h in store.history(NAME, namespace=NS, since=max(1, head.version - 300)):
        touched += [op.id for op in (h.delta.operations if h.delta else []) if op.type == "UPDATE"]
    store.close()
    store = PlaybookStore(url)  # a fresh process's view: nothing held
    app = create_app(store, Tokens.parse({"tokens": {TOKEN: {"namespaces": ["*"], "role": "admin"}}}, where="bench"))
    rnd = random.Random(args.seed + 1)
    n, hv = args.repeats, head.version
    pb = f"/ui/p/{NS}/{NAME}"
    pages: dict[str, list[str]] = {
        "index": ["/ui/"] * n,
        "playbook (head)": [pb] * n,
        "playbook page 50": [f"{pb}?page=50"] * n,
        "playbook search": [f"{pb}?q=endpoint_{rnd.randrange(97)}+" for _ in range(n)],
        "playbook at a version": [f"{pb}?version={rnd.randrange(2, hv)}" for _ in range(n)],
        "timeline (newest)": [f"{pb}/timeline"] * n,
        "timeline page 10": [f"{pb}/timeline?page=10"] * n,
        "diff (a version's change)": [f"{pb}/diff?from={v - 1}&to={v}" for v in rnd.sample(range(2, hv), n)],
        "diff v1 -> head": [f"{pb}/diff?from=1&to={hv}"] * n,
        "blame": [f"{pb}/blame/{touched[i % len(touched)]}" for i in range(n)],
        "review (pending)": [f"{pb}/review"] * n,
        "episodes": [f"{pb}/episodes"] * n,
        "check (cold, then cached)": [f"{pb}/check"] * n,
    }
    results: dict[str, dict[str, float]] = {}
    with Server(app) as server:
        browser = Browser(server.port)
        browser.sign_in(TOKEN)
        timed(browser, ["/ui/"])  # the first request of a process (imports, the head's first load)
        print(f"{args.bullets:,} bullets, {hv:,} versions, {args.repeats} requests per page (ms, wall clock)")
        print(f"{'page':32} {'p50':>8} {'p95':>8} {'max':>8} {'first':>8}")
        for label, paths in pages.items():
            took = timed(browser, paths)
            ordered = sorted(took)
            p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
            results[label] = {"p50": statistics.median(took), "p95": p95, "max": max(took), "first": took[0]}
            r = results[label]
            print(f"{label:32} {r['p50']:8.1f} {r['p95']:8.1f} {r['max']:8.1f} {r['first']:8.1f}")
    store.close()
    if args.json:
        print(json.dumps({"bullets": args.bullets, "versions": hv, "repeats": n, "pages": results}, indent=1))


if __name__ == "__main__":
    main()
