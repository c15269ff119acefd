"""One agent process of the multi-agent example: answers questions about the cooperative's house rules using the
playbook it reads from the shared ACE service, and sends each finished episode back to learn from.

The agent is deliberately simple and has no model of its own: it reads the playbook as lossless JSON over HTTP,
takes the fact bullet most relevant to the question (:func:`ace.playbook.focus.relevant`) and answers with its
value, or says it does not know. What it answers right is what the service learned from the episodes of all four
agents. Standard library HTTP only, to show that any language can do the same.

``python examples/multi_agent/agent.py --url URL --token TOKEN --agent 0 --of 4 --episodes 50``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from ace.playbook import Playbook
from ace.playbook.focus import fact_value, relevant
from ace.tasks.conventions import Conventions, conventions_stream


def call(url: str, token: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {token}"})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for attempt in range(20):  # the service may be restarting or busy: retry, the episode id keeps it idempotent
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError:
            raise
        except OSError:
            time.sleep(0.25 * (attempt + 1))
    raise RuntimeError(f"{method} {url}: the service did not answer")


def answer(playbook: Playbook, question: str) -> str:
    for bullet in relevant(playbook, question, 3):
        if value := fact_value(bullet.content):
            return value
    return "I do not know."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--namespace", default="coop")
    ap.add_argument("--playbook", default="house-rules")
    ap.add_argument("--agent", type=int, required=True)
    ap.add_argument("--of", type=int, required=True)
    ap.add_argument("--episodes", type=int, required=True, help="episodes this agent sends")
    ap.add_argument(
        "--facts", type=int, default=None, help="distinct rules (default: a quarter of all episodes, <= 25)"
    )
    ap.add_argument("--wait", type=float, default=600.0, help="seconds to wait for an episode to be learned")
    args = ap.parse_args()
    total = args.episodes * args.of
    stream = conventions_stream(0, facts=args.facts or max(1, min(25, total // 4)), questions=total)
    mine = stream[args.agent :: args.of]
    base = f"{args.url}/v1/playbooks/{args.namespace}/{args.playbook}"
    judge = Conventions()
    for n, task in enumerate(mine):
        try:
            pb = Playbook.from_dict(call(f"{base}?format=json", args.token))
        except urllib.error.HTTPError as e:
            if e.code != 404:  # no playbook yet: the first episode creates it
                raise
            pb = Playbook.empty()
        said = answer(pb, task.input)
        fb = judge(task, said)
        episode = {
            "id": f"agent-{args.agent}:{task.id}",
            "task": task.input,
            "messages": [{"role": "user", "content": task.input}, {"role": "assistant", "content": said}],
            "outcome": {"success": bool(fb.correct), "message": fb.message},
            "target": task.target,
        }
        sent = call(f"{base}/episodes", args.token, "POST", episode)
        # wait until it is learned from, so that the next question sees what every agent has taught so far
        deadline = time.monotonic() + args.wait
        while sent["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            sent = call(f"{base}/episodes/{urllib.request.quote(episode['id'], safe='')}", args.token)
        print(json.dumps({"agent": args.agent, "n": n, "task": task.id, "correct": bool(fb.correct),
                          "status": sent["status"], "version": sent["version"]}), flush=True)  # fmt: skip
    sys.exit(0)


if __name__ == "__main__":
    main()
