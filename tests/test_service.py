"""`ace serve`, the HTTP service over the store: a real SQLite store behind FastAPI (in process through its test
client, and once as a real `ace serve` process on 127.0.0.1). Tokens are bound to namespaces and roles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ace.errors import ConfigError
from ace.playbook import Playbook, parse_ace
from ace.service.app import create_app
from ace.service.auth import Tokens
from ace.store import PlaybookStore
from tests.conftest import free_port

WRITER, READER, OTHER = "writer-token-0123456789", "reader-token-0123456789", "other-ns-token-0123456789"
TOKENS = {
    "tokens": {
        WRITER: {"namespaces": ["team-a"], "role": "write"},
        READER: {"namespaces": ["team-a"], "role": "read"},
        OTHER: {"namespaces": ["team-b"], "role": "admin"},
    }
}
START = parse_ace("## STRATEGIES AND HARD RULES\n[shr-00001] Always read the API doc before calling an API.\n")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = PlaybookStore(f"sqlite:///{tmp_path / 'svc.db'}")
    store.create("agent", START, namespace="team-a")
    with TestClient(create_app(store, Tokens.parse(TOKENS, where="test"), max_body_bytes=1 << 20)) as c:
        yield c
    store.close()


ADD = {"operations": [{"type": "ADD", "section": "STRATEGIES AND HARD RULES", "content": "Page through every result."}]}


def test_read_apply_history_and_diff_with_a_write_token(client: TestClient) -> None:
    got = client.get("/v1/playbooks/team-a/agent", headers=_auth(WRITER))
    assert got.status_code == 200 and got.headers["etag"] == '"1"' and "[shr-00001]" in got.text
    made = client.post("/v1/playbooks/team-a/agent/deltas", headers=_auth(WRITER) | {"If-Match": '"1"'}, json=ADD)
    assert made.status_code == 201 and made.json()["version"] == 2 and made.json()["bullets"] == 2
    text = client.get("/v1/playbooks/team-a/agent?layout=stable&budget=50", headers=_auth(READER)).text
    assert len(text) <= 200 and "helpful=" not in text
    odd = client.get("/v1/playbooks/team-a/agent?layout=diagonal", headers=_auth(READER))
    assert odd.status_code == 422 and "layout" in odd.json()["error"]
    as_json = client.get("/v1/playbooks/team-a/agent?format=json&version=1", headers=_auth(READER)).json()
    assert Playbook.from_dict(as_json) == START
    history = client.get("/v1/playbooks/team-a/agent/history", headers=_auth(READER)).json()
    assert [h["version"] for h in history] == [1, 2] and history[1]["delta"]["operations"][0]["id"] == "shr-00002"
    diff = client.get("/v1/playbooks/team-a/agent/diff?from=1&to=2", headers=_auth(READER)).json()
    assert [b["id"] for b in diff["added"]] == ["shr-00002"] and not diff["removed"] and not diff["changed"]
    listed = client.get("/v1/playbooks/team-a", headers=_auth(READER)).json()
    assert listed == [{"name": "agent", "head": 2, "created_at": listed[0]["created_at"]}]


def test_tokens_roles_and_namespaces_are_enforced(client: TestClient) -> None:
    assert client.get("/v1/playbooks/team-a/agent").status_code == 401
    bad = client.get("/v1/playbooks/team-a/agent", headers=_auth("not-a-known-token-at-all"))
    assert (
        bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer" and "bearer token" in bad.json()["error"]
    )
    assert client.get("/v1/playbooks/team-a/agent", headers={"Authorization": WRITER}).status_code == 401  # no scheme
    other = client.get("/v1/playbooks/team-a/agent", headers=_auth(OTHER))  # admin, but of another namespace
    assert other.status_code == 403 and "team-a" in other.json()["error"]
    ro = client.post("/v1/playbooks/team-a/agent/deltas", headers=_auth(READER), json=ADD)
    assert ro.status_code == 403 and "write" in ro.json()["error"]
    assert client.get("/v1/playbooks/team-b/agent", headers=_auth(OTHER)).status_code == 404  # nothing crosses over
    hostile = client.get("/v1/playbooks/..%2F..%2Fetc/agent", headers=_auth(OTHER))
    assert hostile.status_code in (403, 404, 422) and "error" in hostile.json()


def test_a_stale_if_match_is_409_with_the_head_and_a_bad_delta_is_422(client: TestClient) -> None:
    first = client.post("/v1/playbooks/team-a/agent/deltas", headers=_auth(WRITER) | {"If-Match": "1"}, json=ADD)
    assert first.status_code == 201
    stale = client.post("/v1/playbooks/team-a/agent/deltas", headers=_auth(WRITER) | {"If-Match": "1"}, json=ADD)
    assert stale.status_code == 409 and stale.json()["head"] == 2 and "version 2, not 1" in stale.json()["error"]
    unknown = {"operations": [{"type": "UPDATE", "id": "shr-99999", "content": "A rule that replaces another."}]}
    bad = client.post("/v1/playbooks/team-a/agent/deltas", headers=_auth(WRITER), json=unknown)
    assert bad.status_code == 422 and "unknown bullet id 'shr-99999'" in bad.json()["error"]
    junk = client.post("/v1/playbooks/team-a/agent/deltas", headers=_auth(WRITER), content=b"{not json")
    assert junk.status_code == 422 and "JSON" in junk.json()["error"]
    assert (
        client.post(
            "/v1/playbooks/team-a/agent/deltas", headers=_auth(WRITER) | {"If-Match": "x"}, json=ADD
        ).status_code
        == 422
    )
    # nothing of the refused writes landed
    assert [h["version"] for h in client.get("/v1/playbooks/team-a/agent/history", headers=_auth(READER)).json()] == [
        1,
        2,
    ]


def test_a_10_mb_body_is_refused_unread(client: TestClient) -> None:
    big = b'{"operations": [], "reasoning": "' + b"x" * (10 << 20) + b'"}'
    r = client.post("/v1/playbooks/team-a/agent/deltas", headers=_auth(WRITER), content=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"y" * (1 << 19)

    streamed = client.post("/v1/playbooks/team-a/agent/deltas", headers=_auth(WRITER), content=chunks())
    assert streamed.status_code == 413


def test_a_tokens_file_must_be_strict(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        Tokens.parse({"tokens": {"short": {"namespaces": ["a"], "role": "read"}}}, where="t")
    with pytest.raises(ConfigError, match="role"):
        Tokens.parse({"tokens": {WRITER: {"namespaces": ["a"], "role": "root"}}}, where="t")
    with pytest.raises(ConfigError, match="namespace"):
        Tokens.parse({"tokens": {WRITER: {"namespaces": ["../x"], "role": "read"}}}, where="t")
    monkeypatch.delenv("ACE_TOKENS", raising=False)
    with pytest.raises(ConfigError, match="never runs open"):
        Tokens.load(None)
    monkeypatch.setenv("ACE_TOKENS", json.dumps(TOKENS))
    assert len(Tokens.load(None)) == 3
    (tmp_path / "t.toml").write_text(f'[tokens."{READER}"]\nnamespaces = ["team-a"]\nrole = "read"\n')
    grant = Tokens.load(tmp_path / "t.toml").grant(READER)
    assert grant is not None and grant.allows("team-a", "read") and not grant.allows("team-a", "write")


@pytest.mark.parametrize("processes", [1, 2])
def test_ace_serve_as_a_real_process_on_loopback(tmp_path: Path, processes: int) -> None:
    db = f"sqlite:///{tmp_path / 'served.db'}"
    PlaybookStore(db).create("agent", START, namespace="team-a")
    (tmp_path / "tokens.json").write_text(json.dumps(TOKENS))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ACE_TOKENS"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ace.cli",
            "serve",
            "--db",
            db,
            "--port",
            str(port),
            "--tokens",
            str(tmp_path / "tokens.json"),
            "--processes",
            str(processes),
            "--workers",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/v1/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(f"{url}/v1/playbooks/team-a/agent", headers=_auth(READER))
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and b"[shr-00001]" in r.read()
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{url}/v1/playbooks/team-a/agent", timeout=5)
        assert denied.value.code == 401 and "error" in json.loads(denied.value.read())
        with urllib.request.urlopen(f"{url}/docs", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_import_export_rollback_blame_and_check_over_http(client: TestClient) -> None:
    text = "## COMMON MISTAKES\n[cm-00001] Never guess an API's argument names.\n[cm-00002] Check the page count.\n"
    made = client.put("/v1/playbooks/team-a/imported", headers=_auth(WRITER), content=text)
    assert made.status_code == 201 and made.json() == {"version": 1, "digest": made.json()["digest"], "bullets": 2}
    again = client.put("/v1/playbooks/team-a/imported", headers=_auth(WRITER), content=text)
    assert again.status_code == 409 and "exists" in again.json()["error"]
    assert client.put("/v1/playbooks/team-a/x", headers=_auth(READER), content=text).status_code == 403
    junk = client.put("/v1/playbooks/team-a/junk", headers=_auth(WRITER), content="just some words")
    assert junk.status_code == 422 and "SECTION" in junk.json()["error"]
    not_utf8 = client.put("/v1/playbooks/team-a/bin", headers=_auth(WRITER), content=b"\xff\xfe## X\n")
    assert not_utf8.status_code == 422 and "UTF-8" in not_utf8.json()["error"]
    assert client.put("/v1/playbooks/team-a/..%2Fescape", headers=_auth(WRITER), content=text).status_code in (
        404,
        422,
    )
    exported = client.get("/v1/playbooks/team-a/imported?format=ace", headers=_auth(READER)).text
    assert "[cm-00001] helpful=0 harmful=0 :: Never guess" in exported
    md = client.get("/v1/playbooks/team-a/imported?format=md", headers=_auth(READER)).text
    assert md.startswith("# Playbook") and "Check the page count." in md
    skill = client.get("/v1/playbooks/team-a/imported?format=skillbook", headers=_auth(READER)).json()
    assert "schema_version" in skill

    rm = {"operations": [{"type": "REMOVE", "id": "cm-00002"}]}
    assert client.post("/v1/playbooks/team-a/imported/deltas", headers=_auth(WRITER), json=rm).json()["version"] == 2
    stale = client.post("/v1/playbooks/team-a/imported/rollback?to=1", headers=_auth(WRITER) | {"If-Match": "1"})
    assert stale.status_code == 409 and stale.json()["head"] == 2
    back = client.post("/v1/playbooks/team-a/imported/rollback?to=1", headers=_auth(WRITER) | {"If-Match": "2"})
    assert back.status_code == 201 and back.json()["version"] == 3 and back.json()["bullets"] == 2
    assert client.post("/v1/playbooks/team-a/imported/rollback?to=9", headers=_auth(WRITER)).status_code == 404
    assert client.post("/v1/playbooks/team-a/imported/rollback?to=1", headers=_auth(READER)).status_code == 403

    blame = client.get("/v1/playbooks/team-a/imported/blame/cm-00002", headers=_auth(READER)).json()
    assert [(b["version"], b["op"]) for b in blame] == [(1, "IMPORT"), (2, "REMOVE"), (3, "ROLLBACK")]
    check = client.get("/v1/playbooks/team-a/imported/check", headers=_auth(READER)).json()
    assert check == {"versions": [1, 3], "alerts": []}
    # a playbook that loses most of what it knew in one step is what the detectors exist to see
    big = "## RULES\n" + "".join(
        f"[r-{i:05d}] Rule {i}: invoices for region {i} go out on day {i % 28}.\n" for i in range(30)
    )
    client.put("/v1/playbooks/team-a/big", headers=_auth(WRITER), content=big)
    wipe = {"operations": [{"type": "REMOVE", "id": f"r-{i:05d}"} for i in range(25)]}
    assert client.post("/v1/playbooks/team-a/big/deltas", headers=_auth(WRITER), json=wipe).status_code == 201
    alerts = client.get("/v1/playbooks/team-a/big/check", headers=_auth(READER)).json()["alerts"]
    assert alerts and all(a["versions"] == [1, 2] for a in alerts) and {a["severity"] for a in alerts} >= {"critical"}
    too_many = client.get("/v1/playbooks/team-a/big/check?from=1", headers=_auth(READER))
    assert too_many.status_code == 200  # 2 versions: within the span
    from ace.service.core import Limits

    CHECK_SPAN = Limits().check_span

    tag = {"operations": [{"type": "TAG", "id": "r-00029", "tag": "helpful"}]}
    for _ in range(CHECK_SPAN):
        client.post("/v1/playbooks/team-a/big/deltas", headers=_auth(WRITER), json=tag)
    wide = client.get("/v1/playbooks/team-a/big/check?from=1", headers=_auth(READER))
    assert wide.status_code == 422 and f"at most {CHECK_SPAN} versions" in wide.json()["error"]
    recent = client.get("/v1/playbooks/team-a/big/check", headers=_auth(READER)).json()
    assert recent["versions"] == [3, CHECK_SPAN + 2]


EPISODE = {
    "id": "run-1",
    "task": "Which day are invoices sent?",
    "messages": [
        {"role": "user", "content": "Which day are invoices sent?"},
        {"role": "assistant", "content": "Monday"},
    ],
    "outcome": {"success": False, "message": "wrong: invoices go out on Thursday"},
}


def test_episodes_are_queued_once_and_their_status_is_readable(client: TestClient) -> None:
    sent = client.post("/v1/playbooks/team-a/agent/episodes", headers=_auth(WRITER), json=EPISODE)
    assert sent.status_code == 202 and sent.json()["status"] == "queued" and sent.json()["episode_id"] == "run-1"
    again = client.post("/v1/playbooks/team-a/agent/episodes", headers=_auth(WRITER), json=EPISODE)
    assert again.status_code == 200 and again.json()["status"] == "queued"  # a retry queues nothing new
    changed = client.post("/v1/playbooks/team-a/agent/episodes", headers=_auth(WRITER), json=EPISODE | {"task": "?"})
    assert changed.status_code == 409 and "different body" in changed.json()["error"]
    bad = client.post("/v1/playbooks/team-a/agent/episodes", headers=_auth(WRITER), json={"messages": []})
    assert bad.status_code == 422 and "messages" in bad.json()["error"]
    junk = client.post("/v1/playbooks/team-a/agent/episodes", headers=_auth(WRITER), content=b"[1, 2")
    assert junk.status_code == 422 and "not JSON" in junk.json()["error"]
    assert client.post("/v1/playbooks/team-a/agent/episodes", headers=_auth(READER), json=EPISODE).status_code == 403
    assert client.post("/v1/playbooks/team-b/agent/episodes", headers=_auth(WRITER), json=EPISODE).status_code == 403
    status = client.get("/v1/playbooks/team-a/agent/episodes/run-1", headers=_auth(READER)).json()
    assert status["status"] == "queued" and status["attempts"] == 0 and status["version"] is None
    listed = client.get("/v1/playbooks/team-a/agent/episodes?status=queued", headers=_auth(READER)).json()
    assert [e["episode_id"] for e in listed] == ["run-1"]
    assert client.get("/v1/playbooks/team-a/agent/episodes/nope", headers=_auth(READER)).status_code == 404
    assert client.get("/v1/playbooks/team-b/agent/episodes/run-1", headers=_auth(OTHER)).status_code == 404


def test_memory_routes_per_namespace(client: TestClient) -> None:
    facts = client.get("/v1/memory/team-a/facts", headers=_auth(READER))
    assert facts.status_code == 200 and facts.json() == []
    no_tier = client.get("/v1/memory/team-a/episodes?q=invoices", headers=_auth(READER))
    assert no_tier.status_code == 404 and "--memory" in no_tier.json()["error"]
    assert client.get("/v1/memory/team-b/facts", headers=_auth(READER)).status_code == 403


def test_episode_search_reads_the_episodic_tier_of_the_token_s_namespace(tmp_path: Path) -> None:
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.memory import Episode, EpisodicStore

    embedder = MiniLMEmbedder()
    tiers = {ns: EpisodicStore(tmp_path / "chroma", embedder, namespace=ns) for ns in ("team-a", "team-b")}
    tiers["team-a"].add(
        [
            Episode("e1", "Sum the invoices of March", "paged through 3 pages", "success", "fetch every page"),
            Episode("e2", "Book a flight to Oslo", "picked the cheapest fare", "failure", "check the baggage rule"),
        ]
    )
    tiers["team-b"].add([Episode("b1", "Sum the invoices of May", "one page only", "failure", "secret of team b")])
    store = PlaybookStore(f"sqlite:///{tmp_path / 'svc.db'}")
    app = create_app(store, Tokens.parse(TOKENS, where="test"), episodes=lambda ns: tiers.get(ns))
    with TestClient(app) as c:
        hits = c.get("/v1/memory/team-a/episodes?q=adding up invoice totals&k=2", headers=_auth(READER)).json()
        assert [h["id"] for h in hits] == ["e1", "e2"] and hits[0]["similarity"] > hits[1]["similarity"]
        assert "secret of team b" not in json.dumps(hits)  # one namespace's memory never answers another's
        newest = c.get("/v1/memory/team-a/episodes?k=5", headers=_auth(READER)).json()
        assert {h["id"] for h in newest} == {"e1", "e2"}
        assert c.get("/v1/memory/team-b/episodes?q=invoices", headers=_auth(READER)).status_code == 403
    store.close()
