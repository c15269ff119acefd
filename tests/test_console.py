"""The ACE console (ace.service.console) through FastAPI's test client: every page over a real SQLite store with a
history of every kind of change, signed in with real tokens; the sign-in cookie, CSRF and Origin rules; read tokens
seeing no controls and refused when they post anyway; approve and reject through the forms; hostile content
escaped; `ace ui` as a real process."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ace.playbook import Delta, parse_ace
from ace.service.app import create_app
from ace.service.auth import Grant, Tokens
from ace.service.console import views
from ace.service.console.app import show
from ace.service.core import Service
from ace.store import SERVING, PlaybookStore

ADMIN, REVIEWER, WRITER = "console-admin-token-0001", "console-review-token-0001", "console-write-token-0001"
READER, OTHER = "console-read-token-00001", "console-other-ns-token-01"
TOKENS = {
    "tokens": {
        ADMIN: {"name": "ops", "namespaces": ["*"], "role": "admin"},
        REVIEWER: {"name": "rita", "namespaces": ["team-a"], "role": "review"},
        WRITER: {"name": "bot", "namespaces": ["team-a"], "role": "write"},
        READER: {"name": "viewer", "namespaces": ["team-a"], "role": "read"},
        OTHER: {"name": "b-admin", "namespaces": ["team-b"], "role": "admin"},
    }
}
ORIGIN = {"Origin": "http://testserver"}
HOSTILE = "Be brief <script>alert('x')</script> and {{ 7*7 }} {% raw %} \"quoted\" & 'single' </bdi></td>"
PENDING_TEXT = "Refunds of digital goods are never possible after download."
START = f"""## REFUNDS
[ref-00001] Refunds are possible within 30 days of purchase.
[ref-00002] Ask for the order number before anything else.
## TONE
[ton-00003] {HOSTILE}
"""


def _commit(store: PlaybookStore, ops: list[dict[str, Any]], task: str, *, message: str | None = None) -> int:
    delta = Delta.parse(json.dumps({"operations": ops, "source": {"task_id": task, "step": 1, "run_id": "demo"}}))
    return store.commit("support", delta, namespace="team-a", author="curator", message=message).version


def build_demo(url: str) -> PlaybookStore:
    """team-a/support: an import, an UPDATE, an ADD with a TAG, a duplicate merged, a long bullet, then the review
    policy and a pending ADD (v7); three episodes (done, failed, queued); team-b/secret for another namespace."""
    store = PlaybookStore(url)
    store.create("support", parse_ace(START), namespace="team-a", author="importer")
    _commit(
        store,
        [
            {
                "type": "UPDATE",
                "id": "ref-00001",
                "content": "Refunds are possible within 30 days of purchase, with the receipt.",
            }
        ],
        "q-1",
    )
    _commit(
        store,
        [
            {"type": "ADD", "section": "REFUNDS", "content": "Refunds after 30 days need a manager (MGR-7)."},
            {"type": "TAG", "id": "ref-00002", "tag": "helpful"},
        ],
        "q-2",
    )
    _commit(store, [{"type": "ADD", "section": "REFUNDS", "content": "Always ask for the order number first."}], "q-3")
    _commit(
        store,
        [
            {
                "type": "MERGE",
                "ids": ["ref-00002", "ref-00005"],
                "content": "Ask for the order number first, before anything else.",
            }
        ],
        "q-4",
    )
    _commit(store, [{"type": "ADD", "section": "TONE", "content": "Long: " + "word " * 700}], "q-5")
    svc, admin = Service(store), Grant.local("ops", role="admin")
    svc.set_promotion(admin, "team-a", "support", "review")  # serving stays at v6
    _commit(store, [{"type": "ADD", "section": "REFUNDS", "content": PENDING_TEXT}], "q-7")
    for i in (1, 2, 3):
        episode = {
            "id": f"run-{i}",
            "messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "an answer"}],
        }
        svc.submit_episode(Grant.local("bot", ["team-a"]), "team-a", "support", episode)
    first = svc.queue.claim("w1")
    assert first is not None
    svc.queue.finish(first, "w1", version=3, committed=True)
    second = svc.queue.claim("w1")
    assert second is not None
    svc.queue.fail(second, "w1", "the model said <script>no</script>", retry=False)
    store.create("secret", parse_ace("## X\n[x-00001] Team b only.\n"), namespace="team-b")
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PlaybookStore]:
    s = build_demo(f"sqlite:///{tmp_path / 'console.db'}")
    yield s
    s.close()


@pytest.fixture
def app(store: PlaybookStore, tmp_path: Path) -> Any:
    from ace.app.console_report import report_html

    # the runs page reads this test's own runs directory (never the user's)
    return create_app(store, Tokens.parse(TOKENS, where="test"), runs_dir=tmp_path / "runs", run_report=report_html)


def _client(app: Any, token: str | None = None, **kwargs: Any) -> TestClient:
    client = TestClient(app, **kwargs)
    if token is not None:
        sign_in(client, token)
    return client


def sign_in(client: TestClient, token: str) -> str:
    """Sign ``client`` in through the form; returns the session's CSRF token."""
    form = client.get("/ui/login")
    nonce = _csrf(form.text)
    origin = {"Origin": str(client.base_url).rstrip("/")}
    done = client.post(
        "/ui/login", data={"csrf": nonce, "token": token, "next": "/ui/"}, headers=origin, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    return _csrf(client.get("/ui/").text)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


PAGES = {
    "/ui/": ["support", "team-a", "by curator", "1 pending"],
    "/ui/p/team-a/support": ["# playbook team-a/support v6", "tokens of a 2,000-token budget", "ref-00001"],
    "/ui/p/team-a/support/timeline": ["v7", "import", "curator", "q-4", "serving"],
    "/ui/p/team-a/support/diff?from=2&to=3": ["Refunds after 30 days need a manager (MGR-7).", "helpful 0 → 1"],
    "/ui/p/team-a/support/blame/ref-00001": ["Refunds are possible within 30 days of purchase", "q-1", "IMPORT"],
    "/ui/p/team-a/support/review": ["v7", PENDING_TEXT, "policy"],
    "/ui/p/team-a/support/episodes": ["run-1", "run-2", "run-3", "failed"],
    "/ui/p/team-a/support/check": ["Collapse check"],
    "/ui/n/team-a/facts": ["Knowledge graph"],
}


@pytest.mark.parametrize("token", [READER, ADMIN])
def test_every_page_renders_what_the_service_gives(app: Any, token: str) -> None:
    client = _client(app, token)
    for path, expected in PAGES.items():
        got = client.get(path)
        assert got.status_code == 200, (path, got.text[-800:])
        assert got.headers["content-type"].startswith("text/html")
        text = got.text
        for needle in expected:
            assert needle in text or str(show(needle)) in text, (path, needle)
    css, js = client.get("/ui/static/console.css"), client.get("/ui/static/console.js")
    assert css.status_code == 200 and "font" in css.text and js.status_code == 200 and "addEventListener" in js.text


def test_pages_need_a_signed_in_token(app: Any) -> None:
    anonymous = _client(app)
    for path in PAGES:
        got = anonymous.get(path, follow_redirects=False)
        assert got.status_code == 303 and got.headers["location"].startswith("/ui/login?next="), path
    assert anonymous.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    posted = anonymous.post("/ui/p/team-a/support/review/approve", data={"to": "7"}, headers=ORIGIN)
    assert posted.status_code == 401
    forged = _client(app)
    forged.cookies.set("ace_console", "abcdef.bm90LWEtdG9rZW4tYXQtYWxsLTAwMDA", path="/ui/")
    assert forged.get("/ui/", follow_redirects=False).status_code == 303
    # the JSON API is untouched: a console cookie is no bearer token
    signed = _client(app, ADMIN)
    assert signed.get("/v1/playbooks/team-a").status_code == 401


def test_the_sign_in_cookie_is_httponly_samesite_strict_and_secure_over_https(app: Any) -> None:
    client = _client(app)
    form = client.get("/ui/login")
    assert "HttpOnly" in form.headers["set-cookie"] and "SameSite=strict" in form.headers["set-cookie"]
    wrong = client.post(
        "/ui/login", data={"csrf": _csrf(form.text), "token": "not-a-token-of-ours-at-all"}, headers=ORIGIN
    )
    assert wrong.status_code == 401 and "not valid" in wrong.text and "ace_console" not in client.cookies
    done = client.post(
        "/ui/login",
        data={"csrf": _csrf(wrong.text), "token": ADMIN, "next": "/ui/p/team-a/support"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/p/team-a/support"
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith("ace_console="))
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/ui/" in flags and "secure" not in flags
    assert ADMIN not in cookie  # kept encoded, beside the session's nonce
    secure = TestClient(app, base_url="https://testserver")
    nonce = _csrf(secure.get("/ui/login").text)
    over_tls = secure.post(
        "/ui/login",
        data={"csrf": nonce, "token": ADMIN},
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    cookie = next(c for c in over_tls.headers.get_list("set-cookie") if c.startswith("ace_console="))
    assert "secure" in [f.strip().lower() for f in cookie.split(";")]
    # somewhere else to go after signing in is never followed
    nonce = _csrf(client.get("/ui/login").text)
    away = client.post(
        "/ui/login",
        data={"csrf": nonce, "token": ADMIN, "next": "https://evil.example/"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert away.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert "script-src 'self'" in page.headers["content-security-policy"] and page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_sign_in_is_refused_from_another_origin_or_without_its_form(app: Any) -> None:
    client = _client(app)
    nonce = _csrf(client.get("/ui/login").text)
    for headers, csrf in [({}, nonce), ({"Origin": "http://evil.example"}, nonce), (ORIGIN, "forged"), (ORIGIN, "")]:
        got = client.post("/ui/login", data={"csrf": csrf, "token": ADMIN}, headers=headers, follow_redirects=False)
        assert got.status_code == 403, headers
    fresh = _client(app)  # no sign-in cookie at all
    got = fresh.post("/ui/login", data={"csrf": nonce, "token": ADMIN}, headers=ORIGIN, follow_redirects=False)
    assert got.status_code == 403 and "ace_console" not in fresh.cookies


def test_a_read_token_sees_no_controls_and_is_refused_if_it_posts_anyway(app: Any, store: PlaybookStore) -> None:
    client = _client(app, READER)
    csrf = _csrf(client.get("/ui/").text)
    review = client.get("/ui/p/team-a/support/review")
    assert review.status_code == 200 and PENDING_TEXT in review.text
    assert (
        "review/approve" not in review.text and "review/reject" not in review.text and "may not approve" in review.text
    )
    for path in PAGES:
        html = client.get(path).text
        assert re.findall(r'<form method="post" action="([^"]+)"', html) == ["/ui/logout"], path
    refused = client.post("/ui/p/team-a/support/review/approve", data={"csrf": csrf, "to": "7"}, headers=ORIGIN)
    assert refused.status_code == 403 and "may not review" in refused.text
    refused = client.post(
        "/ui/p/team-a/support/review/reject", data={"csrf": csrf, "candidate": "7", "reason": "x"}, headers=ORIGIN
    )
    assert refused.status_code == 403
    writer = _client(app, WRITER)  # a write token cannot serve what learning proposed either
    csrf = _csrf(writer.get("/ui/").text)
    assert "review/approve" not in writer.get("/ui/p/team-a/support/review").text
    assert (
        writer.post("/ui/p/team-a/support/review/approve", data={"csrf": csrf, "to": "7"}, headers=ORIGIN).status_code
        == 403
    )
    assert (
        store.resolve("support", SERVING, namespace="team-a") == 6
        and store.head_version("support", namespace="team-a") == 7
    )


def test_every_post_needs_the_sessions_csrf_token_and_this_origin(app: Any, store: PlaybookStore) -> None:
    client = _client(app, REVIEWER)
    csrf = _csrf(client.get("/ui/").text)
    approve = "/ui/p/team-a/support/review/approve"
    other = _client(app, REVIEWER)  # another session of the same token: another CSRF token
    assert _csrf(other.get("/ui/").text) != csrf
    cases = [
        ({"to": "7"}, ORIGIN),
        ({"to": "7", "csrf": "0" * 64}, ORIGIN),
        ({"to": "7", "csrf": _csrf(other.get("/ui/").text)}, ORIGIN),
        ({"to": "7", "csrf": csrf}, {}),
        ({"to": "7", "csrf": csrf}, {"Origin": "http://evil.example"}),
        ({"to": "7", "csrf": csrf}, {"Origin": "null"}),
        ({"to": "7", "csrf": csrf}, {"Referer": "http://evil.example/ui/"}),
    ]
    for data, headers in cases:
        got = client.post(approve, data=data, headers=headers, follow_redirects=False)
        assert got.status_code == 403, (data, headers)
    assert store.resolve("support", SERVING, namespace="team-a") == 6
    as_json = client.post(approve, json={"to": 7, "csrf": csrf}, headers=ORIGIN)  # not a form: no CSRF token read
    assert as_json.status_code == 403
    referred = client.post(
        approve, data={"to": "7", "csrf": csrf}, headers={"Referer": "http://testserver/ui/x"}, follow_redirects=False
    )
    assert referred.status_code == 303 and store.resolve("support", SERVING, namespace="team-a") == 7
    out = client.post("/ui/logout", data={}, headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 403
    out = client.post("/ui/logout", data={"csrf": csrf}, headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303 and client.get("/ui/", follow_redirects=False).status_code == 303


def test_approve_and_reject_through_the_forms_move_serving(app: Any, store: PlaybookStore) -> None:
    client = _client(app, REVIEWER)
    page = client.get("/ui/p/team-a/support/review")
    assert 'action="/ui/p/team-a/support/review/approve"' in page.text and 'name="to" value="7"' in page.text
    csrf = _csrf(page.text)
    done = client.post(
        "/ui/p/team-a/support/review/approve", data={"csrf": csrf, "to": "7", "reason": "looks right"}, headers=ORIGIN
    )
    assert done.status_code == 200 and "Approved: serving is now v7" in done.text and 'id="serving">v7' in done.text
    assert store.resolve("support", SERVING, namespace="team-a") == 7
    log = store.channel_log("support", namespace="team-a", channel="serving")
    assert log[-1].author == "token:rita" and log[-1].reason == "approved: looks right"
    assert "Nothing waits for review" in done.text
    _commit(store, [{"type": "ADD", "section": "REFUNDS", "content": "Refunds go to the card used to pay."}], "q-8")
    empty = client.post(
        "/ui/p/team-a/support/review/reject", data={"csrf": csrf, "candidate": "8", "reason": " "}, headers=ORIGIN
    )
    assert empty.status_code == 422 and "reason" in empty.text
    stale = client.post("/ui/p/team-a/support/review/approve", data={"csrf": csrf, "to": "99"}, headers=ORIGIN)
    assert stale.status_code in (404, 409, 422)
    flipped = client.post(  # a direction override in a reason is refused (it would reach terminals and the curator)
        "/ui/p/team-a/support/review/reject",
        data={"csrf": csrf, "candidate": "8", "reason": "wrong \u202ecard"},
        headers=ORIGIN,
    )
    assert flipped.status_code == 422 and "control character" in flipped.text
    reason = "wrong card <script>alert(1)</script>\u2028done"
    rejected = client.post(
        "/ui/p/team-a/support/review/reject", data={"csrf": csrf, "candidate": "8", "reason": reason}, headers=ORIGIN
    )
    assert rejected.status_code == 200 and "Rejected: serving is now v9" in rejected.text
    assert store.head_version("support", namespace="team-a") == 9
    timeline = client.get("/ui/p/team-a/support/timeline").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in timeline and "<script>alert" not in timeline
    assert "\u202e" not in timeline and "\u2028" not in timeline


def _id_of(store: PlaybookStore, text: str) -> str:
    return next(b.id for b in store.load("support", namespace="team-a") if b.content == text)


def test_part_of_a_change_is_approved_through_the_form_and_the_rest_turned_down(app: Any, store: PlaybookStore) -> None:
    """v7 (pending), v8 adds a lesson, v9 updates it: the reviewer keeps v8 and v9; the form refuses a part without
    a reason, a part that needs a version left out, and an edit that is no delta, each shown on the page with the
    form as it was sent and nothing written; then the part is served and v7's lesson is gone from serving."""
    card = "Refunds go to the card used to pay."
    _commit(store, [{"type": "ADD", "section": "REFUNDS", "content": card}], "q-8")
    _commit(store, [{"type": "UPDATE", "id": _id_of(store, card), "content": card + " Never in cash."}], "q-9")
    client = _client(app, REVIEWER)
    page = client.get("/ui/p/team-a/support/review").text
    for v in (7, 8, 9):
        assert f'name="keep" value="{v}" form="approve" id="keep-{v}" aria-label="serve v{v}" checked' in page
    assert 'name="edit"' in page and 'name="part" value="1"' in page
    csrf, url = _csrf(page), "/ui/p/team-a/support/review/approve"

    def post(**fields: Any) -> Any:
        return client.post(url, data={"csrf": csrf, "to": "9", "part": "1", **fields}, headers=ORIGIN)

    def untouched() -> None:
        assert store.head_version("support", namespace="team-a") == 9
        assert store.resolve("support", SERVING, namespace="team-a") == 6

    no_reason = post(keep=["8", "9"])
    assert no_reason.status_code == 422 and "turns v7 down: say why in the reason" in no_reason.text
    assert (
        'id="keep-7" aria-label="serve v7">' in no_reason.text
        and 'id="keep-8" aria-label="serve v8" checked' in no_reason.text
    )
    untouched()
    needs = post(keep=["7", "9"], reason="v8 is wrong")
    assert needs.status_code == 422 and "cannot be approved alone" in needs.text and 'value="v8 is wrong"' in needs.text
    untouched()
    hostile = '{"operations": [</textarea><script>alert(1)</script>'
    bad = post(keep=["7", "8", "9"], edit=hostile)
    assert bad.status_code == 422 and "not valid JSON" in bad.text and 'role="alert"' in bad.text
    assert "<script>alert(1)" not in bad.text and "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in bad.text
    untouched()
    unknown = json.dumps({"operations": [{"type": "UPDATE", "id": "ref-09999", "content": "x"}]})
    assert post(keep=["7", "8", "9"], edit=unknown).status_code == 422
    untouched()
    done = post(keep=["8", "9"], reason="digital goods are refunded like any other <b>")
    assert done.status_code == 200 and "Approved as reviewed: serving is now v10" in done.text
    served = [b.content for b in store.load("support", namespace="team-a", channel=SERVING)]
    assert card + " Never in cash." in served and PENDING_TEXT not in served
    assert store.head_version("support", namespace="team-a") == 10 and "Nothing waits for review" in done.text
    turned = done.text.split('id="turned-down"')[1]
    assert PENDING_TEXT in turned and "digital goods are refunded like any other &lt;b&gt;" in turned
    # an edit before approving: the reviewer rewrites the new lesson, and that is what agents read
    _commit(store, [{"type": "ADD", "section": "REFUNDS", "content": "Refunds take 5 days."}], "q-11")
    page = client.get("/ui/p/team-a/support/review").text
    fix = json.dumps({"operations": [{"type": "UPDATE", "id": _id_of(store, "Refunds take 5 days."),
                                      "content": "Refunds take 5 working days."}]})  # fmt: skip
    _commit(store, [{"type": "TAG", "id": "ref-00001", "tag": "helpful"}], "q-12")  # learning moves on meanwhile
    stale = client.post(url, data={"csrf": csrf, "to": "11", "part": "1", "keep": ["11"], "edit": fix}, headers=ORIGIN)
    assert stale.status_code == 409 and "look again" in stale.text and "Refunds take 5 working days." in stale.text
    assert store.resolve("support", SERVING, namespace="team-a") == 10
    edited = client.post(url, data={"csrf": csrf, "to": "12", "part": "1", "keep": ["11", "12"], "edit": fix},
                         headers=ORIGIN)  # fmt: skip
    assert edited.status_code == 200 and "serving is now v13" in edited.text
    served = [b.content for b in store.load("support", namespace="team-a", channel=SERVING)]
    assert "Refunds take 5 working days." in served and "Refunds take 5 days." not in served
    log = store.channel_log("support", namespace="team-a", channel="serving")
    assert log[-1].author == "token:rita" and log[-1].evidence is not None and log[-1].evidence["kept"] == [11, 12]


def test_a_read_or_write_token_sees_no_part_or_edit_controls_and_posting_them_is_refused(
    app: Any, store: PlaybookStore
) -> None:
    for token in (READER, WRITER):
        client = _client(app, token)
        page = client.get("/ui/p/team-a/support/review").text
        assert PENDING_TEXT in page and 'name="keep"' not in page and 'name="edit"' not in page
        csrf = _csrf(page)
        edit = json.dumps({"operations": [{"type": "ADD", "section": "REFUNDS", "content": "Sneaked in."}]})
        for data in ({"keep": ["7"], "part": "1", "reason": "x"}, {"keep": ["7"], "part": "1", "edit": edit}):
            got = client.post("/ui/p/team-a/support/review/approve", data={"csrf": csrf, "to": "7", **data},
                              headers=ORIGIN)  # fmt: skip
            assert got.status_code == 403 and "may not review" in got.text
    assert store.head_version("support", namespace="team-a") == 7
    assert store.resolve("support", SERVING, namespace="team-a") == 6


def test_alerts_on_the_index_and_the_timeline_and_the_channel_moves_marked(app: Any, store: PlaybookStore) -> None:
    """A changed value (30 -> 14 days) is a contradiction the detectors find: the index counts it and the timeline
    marks the version it is about; the check is bounded to the last versions and kept per head. Each channel move
    is marked as what it was: the policy's pin, an approval, a rejection, a demotion."""
    fourteen = "Refunds are possible within 14 days of purchase, with the receipt."
    _commit(store, [{"type": "UPDATE", "id": "ref-00001", "content": fourteen}], "q-8")
    client = _client(app, REVIEWER)
    home = client.get("/ui/").text
    row = home.split("<b>support</b>")[1].split("</tr>")[0]
    assert '<span class="badge sev-warning">1 warning</span>' in row and "1 info" in row and "v1–v8" in row
    assert "last 20 versions" in home
    timeline = client.get("/ui/p/team-a/support/timeline").text
    v8 = timeline.split('<tr class="k-')[1]  # newest first
    assert ">v8<" in v8 and "sev-warning" in v8 and "contradiction" in v8 and "14 days" in v8
    v4 = next(r for r in timeline.split('<tr class="k-')[1:] if ">v4<" in r)
    assert "redundancy" in v4 and "sev-info" in v4
    assert "collapse detectors over the last versions only (v1–v8)" in timeline
    assert "pin" in timeline.split('id="moves"')[1] and "policy immediate -&gt; review" in timeline
    csrf = _csrf(timeline)
    post = client.post(
        "/ui/p/team-a/support/review/approve", data={"csrf": csrf, "to": "8", "reason": "ok"}, headers=ORIGIN
    )
    assert post.status_code == 200
    _commit(store, [{"type": "ADD", "section": "REFUNDS", "content": "Refunds are sent on Fridays."}], "q-9")
    client.post(
        "/ui/p/team-a/support/review/reject",
        data={"csrf": csrf, "candidate": "9", "reason": "not on Fridays"},
        headers=ORIGIN,
    )
    Service(store).move_channel(Grant.local("ops", role="admin"), "team-a", "support", SERVING, 6, reason="back")
    moves = client.get("/ui/p/team-a/support/timeline").text.split('id="moves"')[1]
    kinds = re.findall(r'<tr class="mv-([a-z-]+)">', moves)
    assert kinds == ["demotion", "rejection", "approval", "pin"], kinds
    assert "rejected v9: not on Fridays" in moves and "v10 → v6" in moves
    assert views.move_kind({"version": 9, "previous": 8, "evidence": {"trial": 3, "decision": {"better": True}}}) == (
        "promotion"
    )
    assert views.move_kind({"version": 8, "previous": 9, "evidence": {"kind": "demotion"}}) == "demotion"
    assert views.move_kind({"version": None, "previous": 9, "evidence": None}) == "follow"
    assert views.move_kind({"version": 9, "previous": 6, "evidence": {"decision": "approved part"}}) == (
        "approval of a part"
    )


def test_the_index_checks_a_bounded_amount_per_request_and_keeps_what_it_checked(
    store: PlaybookStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alerts are checked over the last versions only (fewer for a large playbook: the service's work bound), once
    per head, and one index request checks new playbooks only while its work bound lasts."""
    from ace.service.core import Limits

    for i in range(3):
        store.create(f"extra-{i}", parse_ace(f"## S\n[s-00001] Rule {i}.\n"), namespace="team-a")
    svc = Service(store, limits=Limits(check_work=60))
    grant, found = Grant.local("viewer", ["team-a"], role="read"), views.Alerts()
    assert found.span(svc, 7) == 8 and found.span(svc, 1) == 20 and found.span(svc, 1000) == 1
    monkeypatch.setattr(views, "INDEX_CHECK_WORK", 60)
    rows = views.index(svc, grant)["rows"]
    views.index_alerts(svc, grant, rows, found)
    first = {r["name"]: r["alerts"] for r in rows}
    assert first["extra-0"] is not None and sum(a is None for a in first.values()) >= 1
    checked = dict(first)
    for _ in range(4):  # each request checks more, and keeps what an earlier one checked
        views.index_alerts(svc, grant, rows, found)
        for r in rows:
            if checked[r["name"]] is not None:
                assert r["alerts"] is checked[r["name"]]
            checked[r["name"]] = r["alerts"]
    assert all(a is not None for a in checked.values())
    assert checked["support"] is not None and checked["support"]["first"] == 1  # 7 versions of about 7 bullets
    with pytest.raises(Exception, match="may not read"):
        found.get(svc, Grant.local("b", ["team-b"], role="read"), "team-a", "support", 7, 7)


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "demo-before-redesign.trajectory.jsonl"


def _runs(store: PlaybookStore, root: Path) -> Path:
    """A runs directory: the demo's trajectory (format 1), an ace run directory with a trajectory exported from a
    store (format 2, a hostile lesson in a step) and its summary, a tampered copy, a hostile file name, a FIFO, and
    links out of the directory (to /etc, to /etc/passwd) and one inside it."""
    import os
    import shutil

    from ace.runs.trajectory import export

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE, root / "demo.trajectory.jsonl")
    store.create("h", parse_ace("## S\n[s-00001] One.\n"), namespace="team-a")
    delta = Delta.parse(json.dumps({"operations": [{"type": "ADD", "section": "S", "content": HOSTILE}]}))
    store.commit("h", delta, namespace="team-a")
    (root / "exp-1").mkdir()
    export(store, "h", root / "exp-1" / "h.trajectory.jsonl", namespace="team-a")
    rows = [{"method": "ACE <b>", "outcomes": [True, False, True, True], "cost_usd": 0.0123}]
    (root / "exp-1" / "summary.json").write_text(json.dumps({"rows": rows}))
    text = (root / "exp-1" / "h.trajectory.jsonl").read_text()
    (root / "tampered.trajectory.jsonl").write_text(text.replace("One.", "Two."))
    shutil.copy(FIXTURE, root / "x<script>alert(1)<.trajectory.jsonl")
    shutil.copy(FIXTURE, root / "rtl\u202ename.trajectory.jsonl")  # a name the run's page refuses: not listed
    (root / "rtl\u202edir").mkdir()
    os.mkfifo(root / "fifo.trajectory.jsonl")
    (root / "out").symlink_to("/etc")
    (root / "passwd.trajectory.jsonl").symlink_to("/etc/passwd")
    (root / "exp-1" / "passwd.trajectory.jsonl").symlink_to("/etc/passwd")
    (root / "inner").symlink_to(root / "exp-1")
    shutil.copy(FIXTURE, root.parent / "outside.trajectory.jsonl")  # a trajectory out of the runs directory
    (root / "exp-1" / "outside.trajectory.jsonl").symlink_to(root.parent / "outside.trajectory.jsonl")
    return root


def test_the_runs_page_lists_what_the_server_can_read_and_shows_the_step_table(
    app: Any, store: PlaybookStore, tmp_path: Path
) -> None:
    root = _runs(store, tmp_path / "runs")
    client = _client(app, ADMIN)
    assert 'href="/ui/runs">Runs</a>' in client.get("/ui/").text
    listing = client.get("/ui/runs")
    assert listing.status_code == 200
    names = re.findall(r'<a href="/ui/runs/([^"]+)"><code>', listing.text)
    assert sorted(names) == sorted(["demo.trajectory.jsonl", "exp-1", "tampered.trajectory.jsonl", "inner",
                                    "x%3Cscript%3Ealert%281%29%3C.trajectory.jsonl"])  # fmt: skip
    assert "<script>alert" not in listing.text and "&lt;script&gt;alert(1)&lt;.trajectory" in listing.text
    # every name listed opens; a name the console refuses (a direction-changing character) is not listed
    assert "rtl" not in listing.text and all(client.get(f"/ui/runs/{n}").status_code == 200 for n in names)
    refused = client.get("/ui/runs/rtl%E2%80%AEname.trajectory.jsonl")
    assert refused.status_code == 422 and "holds the control or invisible character U+202E" in refused.text
    assert "not a path" not in refused.text
    long = client.get("/ui/runs/" + "a" * 300)
    assert long.status_code == 422 and "300 characters long (at most 255)" in long.text
    demo = client.get("/ui/runs/demo.trajectory.jsonl")
    assert demo.status_code == 200
    assert (
        "ace-trajectory/1: versions only, not verified as a whole" in demo.text
        and "hash chain verified" not in demo.text
    )
    assert demo.text.count("<tr>") - 1 >= 5 and "generator" in demo.text and "reflector" in demo.text
    assert "✗ wrong" in demo.text and "expected" in demo.text and 'class="op op-add"' in demo.text
    run = client.get("/ui/runs/exp-1")
    assert run.status_code == 200 and "hash chain verified" in run.text and "h.trajectory.jsonl" in run.text
    assert "ACE &lt;b&gt;" in run.text and "75.0 %" in run.text and "$0.0123" in run.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in run.text and "<script>alert" not in run.text
    assert "passwd" not in run.text and "outside" not in run.text  # links out of the directory are not listed
    tampered = client.get("/ui/runs/tampered.trajectory.jsonl")
    assert tampered.status_code == 200 and "does not verify" in tampered.text and "edited" in tampered.text
    assert str(root) not in tampered.text.split('role="alert"')[1]
    report = client.get("/ui/runs/demo.trajectory.jsonl/report")
    assert report.status_code == 200 and "sandbox" in report.headers["content-security-policy"]
    assert "script-src" not in report.headers["content-security-policy"] and "data:image/png;base64," in report.text
    assert '<span class="sev critical">3 critical</span>' in report.text  # the 3 critical alerts ace replay finds
    reported = client.get("/ui/runs/exp-1/report")  # from the files checked: no link out is followed
    assert reported.status_code == 200 and "<h1>ACE run report: exp-1</h1>" in reported.text
    assert "Source: <code>runs/exp-1</code>" in reported.text and "<tr><td>h</td><td>1</td>" in reported.text
    assert (
        "outside" not in reported.text and "finance-pre-redesign" not in reported.text and "passwd" not in reported.text
    )
    assert str(tmp_path) not in reported.text and "ACE &lt;b&gt;" in reported.text
    assert client.get("/ui/runs/inner?t=h.trajectory.jsonl").status_code == 200  # a link inside the directory


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/ui/runs/%2E%2E", (404, 422)),
        ("/ui/runs/..%2F..%2Fetc%2Fpasswd", (404, 422)),
        ("/ui/runs/%2Fetc%2Fpasswd", (404, 422)),
        ("/ui/runs/.hidden", (422,)),
        ("/ui/runs/exp-1?t=../../../etc/passwd", (422,)),
        ("/ui/runs/exp-1?t=/etc/passwd", (422,)),
        ("/ui/runs/exp-1?t=..", (422,)),
        ("/ui/runs/exp-1?t=passwd.trajectory.jsonl", (403,)),
        ("/ui/runs/exp-1?t=outside.trajectory.jsonl", (403,)),
        ("/ui/runs/exp-1?t=summary.json", (404,)),
        ("/ui/runs/demo.trajectory.jsonl?t=../exp-1/h.trajectory.jsonl", (404, 422)),
        ("/ui/runs/out", (403,)),
        ("/ui/runs/passwd.trajectory.jsonl", (403,)),
        ("/ui/runs/passwd.trajectory.jsonl/report", (403,)),
        ("/ui/runs/out/report", (403,)),
        ("/ui/runs/fifo.trajectory.jsonl", (404,)),
        ("/ui/runs/nothing-here", (404,)),
        ("/ui/runs/exp-1%00", (422,)),
    ],
)
def test_the_runs_page_never_leaves_the_runs_directory(
    app: Any, store: PlaybookStore, tmp_path: Path, path: str, statuses: tuple[int, ...]
) -> None:
    _runs(store, tmp_path / "runs")
    got = _client(app, ADMIN).get(path)
    assert got.status_code in statuses, (path, got.status_code, got.text[-400:])
    assert "root:" not in got.text and "/bin/" not in got.text


def test_only_a_token_for_every_namespace_reads_the_runs(app: Any, store: PlaybookStore, tmp_path: Path) -> None:
    _runs(store, tmp_path / "runs")
    for token in (READER, REVIEWER, OTHER):
        client = _client(app, token)
        assert 'href="/ui/runs"' not in client.get("/ui/").text
        for path in ("/ui/runs", "/ui/runs/demo.trajectory.jsonl", "/ui/runs/demo.trajectory.jsonl/report"):
            got = client.get(path)
            assert got.status_code == 403 and "every namespace" in got.text, (token, path)
    empty = create_app(store, Tokens.parse(TOKENS, where="test"), runs_dir=tmp_path / "none")
    client = _client(empty, ADMIN)
    assert "no runs directory yet" in client.get("/ui/runs").text
    assert client.get("/ui/runs/demo.trajectory.jsonl/report").status_code == 404  # none, and no renderer


def test_the_episodes_page_searches_the_episodic_memory_of_the_token_s_namespace(
    store: PlaybookStore, tmp_path: Path
) -> None:
    """Episode search on the episodes page, through Service.search_episodes over a real episodic tier (Chroma, the
    embedded MiniLM embedder): this playbook's episodes, or the namespace's; never another namespace's; escaped."""
    from ace.llm.embeddings import MiniLMEmbedder
    from ace.memory import Episode, EpisodicStore

    embedder = MiniLMEmbedder(threads=1)
    tiers = {ns: EpisodicStore(tmp_path / "chroma", embedder, namespace=ns) for ns in ("team-a", "team-b")}
    tiers["team-a"].add(
        [
            Episode(
                "e1",
                "Refund a digital download after 40 days",
                "refused it",
                "failure",
                "ask a manager first",
                playbook="support",
                version=3,
                task_id="q-40",
            ),
            Episode(
                "e2",
                "Book a flight to Oslo",
                "picked the cheapest fare",
                "success",
                "check the baggage rule",
                playbook="travel",
            ),
            Episode(
                "e3",
                f"Refund a late order {HOSTILE}",
                "refunded",
                "success",
                "keep the receipt",
                playbook="support",
                version=5,
            ),
        ]
    )
    tiers["team-b"].add([Episode("b1", "Refund a digital download", "team b's secret", "failure", playbook="support")])
    app = create_app(store, Tokens.parse(TOKENS, where="test"), episodes=lambda ns: tiers.get(ns))
    client = _client(app, READER)
    page = client.get("/ui/p/team-a/support/episodes?q=refunding+a+download+bought+long+ago")
    assert page.status_code == 200
    hits = page.text.split('id="search"')[1].split("</section>")[0]
    assert hits.index("Refund a digital download after 40 days") < hits.index("Refund a late order")
    assert "Oslo" not in hits and "team b" not in hits and "ask a manager first" in hits and "q-40" in hits
    assert "/ui/p/team-a/support/diff?from=2&amp;to=3" in hits and "failure" in hits
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in hits and "<script>alert" not in hits
    every = client.get("/ui/p/team-a/support/episodes?q=a+flight+to+Norway&all=1").text.split('id="search"')[1]
    assert "Book a flight to Oslo" in every and "team b" not in every
    assert "run-1" in page.text  # the queue is still listed below
    none = _client(create_app(store, Tokens.parse(TOKENS, where="test")), READER)
    quiet = none.get("/ui/p/team-a/support/episodes?q=refund")
    assert quiet.status_code == 200 and "no episodic memory" in quiet.text and "run-1" in quiet.text
    assert client.get("/ui/p/team-b/support/episodes?q=refund").status_code == 403


def test_hostile_content_is_escaped_everywhere(app: Any, store: PlaybookStore) -> None:
    big = "A" * 99_000 + " <script>x</script> END"
    store.create(
        "hostile",
        parse_ace(f"## S\n[s-00001] {HOSTILE}\n[s-00002] {big}\n[s-00003] שלום עולם rtl\n"),
        namespace="team-a",
    )
    client = _client(app, READER)
    for path in [
        "/ui/p/team-a/hostile",
        "/ui/p/team-a/hostile/blame/s-00001",
        "/ui/p/team-a/hostile/blame/s-00002",
        "/ui/p/team-a/support",
        "/ui/p/team-a/support/diff?from=1&to=7",
        "/ui/p/team-a/support/episodes",
        "/ui/p/team-a/hostile?q=%3Cscript%3E",
        "/ui/p/team-a/hostile/diff?from=1&to=1",
    ]:
        got = client.get(path)
        assert got.status_code == 200, path
        assert "<script>" not in got.text.replace('<script src="/ui/static/console.js" defer></script>', ""), path
    listing = client.get("/ui/p/team-a/hostile").text
    assert (
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in listing
        and "{{ 7*7 }}" in listing
        and "and 49 " not in listing
    )
    assert "more characters" in listing and "END" not in listing.split("<pre")[0].split("Bullets")[-1]
    assert len(listing) < 180_000 + 20_000  # the prompt's 2,000 tokens and 100 bullets of at most 600 characters
    whole = client.get("/ui/p/team-a/hostile/blame/s-00002").text
    assert "END" in whole and "&lt;script&gt;x&lt;/script&gt; END" in whole
    assert "<bdi" in listing and "שלום עולם" in listing
    found = client.get("/ui/p/team-a/hostile?q=%3Cscript%3E").text
    assert "s-00001" in found and "s-00003" not in found.split("Bullets")[-1]
    failed = client.get("/ui/p/team-a/support/episodes").text
    assert "the model said &lt;script&gt;no&lt;/script&gt;" in failed


def test_show_makes_invisible_and_direction_changing_characters_visible() -> None:
    text = "a\u202eb\u2028c\u200fd\x00e\u00adf\ttab\nline <i>"
    shown = str(show(text))
    for code in ("202E", "2028", "200F", "0000", "00AD"):
        assert f"⟨U+{code}⟩" in shown
    assert "\u202e" not in shown and "\u2028" not in shown and "\t" in shown and "\n" in shown and "&lt;i&gt;" in shown
    assert str(show("x" * 50, 10)).startswith("x" * 10 + '<span class="more">… (40 more')


def test_word_diff_marks_the_words_an_update_changed() -> None:
    got = views.word_diff("Refunds are possible within 30 days.", "Refunds are possible within 45 days, always.")
    assert ("-", "30") in got and ("+", "45") in got and ("+", ", always") in got
    assert "".join(t for op, t in got if op != "+") == "Refunds are possible within 30 days."
    assert "".join(t for op, t in got if op != "-") == "Refunds are possible within 45 days, always."
    long = "w " * 5000
    assert views.word_diff(long, long + "x") == [("-", long), ("+", long + "x")]


def test_the_diff_page_shows_updates_word_by_word_merges_and_counters(app: Any) -> None:
    client = _client(app, READER)
    update = client.get("/ui/p/team-a/support/diff?from=1&to=2").text
    assert "<ins>, with the receipt</ins>" in update and "1 changed" in update
    merged = client.get("/ui/p/team-a/support/diff?from=4&to=5").text
    assert "merged into" in merged and "ref-00005" in merged and "took in ref-00005" in merged
    backwards = client.get("/ui/p/team-a/support/diff?from=7&to=1")
    assert backwards.status_code == 200 and "removed" in backwards.text
    assert client.get("/ui/p/team-a/support/diff?from=1&to=70").status_code == 404
    assert client.get("/ui/p/team-a/support/diff?from=x&to=2").status_code == 422
    assert client.get("/ui/p/team-a/support/diff?from=0&to=2").status_code == 422


def test_blame_gives_the_text_before_and_after_every_change(store: PlaybookStore) -> None:
    svc, grant, states = Service(store), Grant.local("viewer", ["team-a"], role="read"), views.States(size=2)
    _commit(
        store, [{"type": "UPDATE", "id": "ref-00004", "content": "  Refunds after 30 days need a manager.\r\n"}], "q-9"
    )
    _commit(store, [{"type": "REMOVE", "id": "ref-00004"}], "q-10")
    store.rollback("support", 8, namespace="team-a")  # v10: the bullet back
    for bullet in ["ref-00001", "ref-00002", "ref-00004", "ref-00005", "ton-00003"]:
        rows = views.blame(svc, grant, "team-a", "support", bullet, states)["rows"]
        assert rows, bullet
        for row in rows:
            after = store.load("support", row.version, namespace="team-a").get(bullet)
            before = store.load("support", row.version - 1, namespace="team-a").get(bullet) if row.version > 1 else None
            assert row.after == (after.content if after else None), (bullet, row.version, row.op)
            assert row.before == (before.content if before else None), (bullet, row.version, row.op)
    rows = views.blame(svc, grant, "team-a", "support", "ref-00004", states)["rows"]
    assert [r.op for r in rows] == ["ROLLBACK", "REMOVE", "UPDATE", "ADD"] and rows[1].after is None
    assert rows[0].after == "Refunds after 30 days need a manager." and rows[2].source["task_id"] == "q-9"
    merged = views.blame(svc, grant, "team-a", "support", "ref-00005", states)["rows"]
    assert merged[0].op == "MERGE" and merged[0].into == "ref-00002"


def test_pages_for_what_is_not_there_or_not_allowed(app: Any) -> None:
    client = _client(app, READER)
    assert client.get("/ui/p/team-a/nope").status_code == 404
    assert client.get("/ui/p/team-b/secret").status_code == 403
    assert client.get("/ui/p/team-a/support/blame/zzz-00099").status_code == 404
    assert client.get("/ui/p/team-a/support/episodes?status=lost").status_code == 422
    assert client.get("/ui/p/team-a/support?version=99").status_code == 404
    assert client.get("/ui/p/..%2F..%2Fetc/passwd").status_code in (404, 422)
    assert client.get("/ui/nothing/here").status_code == 404
    assert "secret" not in client.get("/ui/").text
    admin = _client(app, OTHER)
    assert "secret" in admin.get("/ui/").text and "support" not in admin.get("/ui/").text


def test_bullets_and_versions_come_a_page_at_a_time(app: Any, store: PlaybookStore) -> None:
    text = "## MANY\n" + "".join(f"[m-{i:05d}] Rule number {i} of the many rules.\n" for i in range(1, 251))
    store.create("many", parse_ace(text), namespace="team-a")
    for i in range(60):
        delta = Delta.parse(json.dumps({"operations": [{"type": "TAG", "id": f"m-{i + 1:05d}", "tag": "helpful"}]}))
        store.commit("many", delta, namespace="team-a")
    client = _client(app, READER)
    first = client.get("/ui/p/team-a/many").text
    assert first.count('class="bullet"') == 100 and "page 1 of 3" in first
    last = client.get("/ui/p/team-a/many?page=3").text
    assert last.count('class="bullet"') == 50 and "m-00250" in last
    found = client.get("/ui/p/team-a/many?q=number+25").text
    assert "m-00025" in found and "m-00250" in found and "m-00100" not in found.split("Bullets")[-1]
    timeline = client.get("/ui/p/team-a/many/timeline").text
    assert timeline.count('<tr class="k-') == 50 and "v61" in timeline and "page 1 of 2" in timeline
    older = client.get("/ui/p/team-a/many/timeline?page=2").text
    assert older.count('<tr class="k-') == 11 and ">v1<" in older
    far = client.get("/ui/p/team-a/many/diff?from=1&to=61").text  # compared from the states the console keeps
    assert "60 changed" in far and "helpful 0 → 1" in far and far.count('<li class="d-changed">') == 60
    assert client.get("/ui/p/team-a/many/diff?from=61&to=1").text.count('<li class="d-changed">') == 60
    whole = client.get("/ui/p/team-a/many?budget=all").text
    assert "of 250 bullets" in whole and "250 of 250" in whole


def test_the_prompt_shown_is_what_service_prompt_gives(store: PlaybookStore) -> None:
    """The console renders the prompt from the version it holds (views.prompt_of): byte for byte what an agent gets
    from Service.prompt, for serving pinned behind the head, any version and any budget."""
    svc, grant, states = Service(store), Grant.local("viewer", ["team-a"], role="read"), views.States(size=2)
    for version, budget in [(None, 2000), (None, None), (None, 30), (1, 2000), (7, 5), (3, None)]:
        ctx = views.playbook(svc, grant, "team-a", "support", states, budget=budget, version=version)
        assert ctx["prompt"] == svc.prompt(grant, "team-a", "support", version=version, budget=budget)
    assert ctx["prompt"].version == 3 and ctx["info"].version == 3
    assert views.playbook(svc, grant, "team-a", "support", states)["prompt"].version == 6  # serving, pinned
    # a state kept is used only while its version's record is the one it was read with
    _, pb = states.get(svc, grant, "team-a", "support", 3)
    assert states.get(svc, grant, "team-a", "support", 3)[1] is pb
    with pytest.raises(Exception, match="version"):
        states.get(svc, grant, "team-a", "support", 99)
    with pytest.raises(Exception, match="may not read"):
        states.get(svc, Grant.local("b", ["team-b"], role="read"), "team-a", "support", 3)


def test_ace_ui_serves_the_console_with_a_new_admin_token(tmp_path: Path) -> None:
    """`ace ui` as a real process: it prints the console's address and a new admin token, which signs in."""
    import os
    import subprocess
    import sys

    import httpx

    from tests.conftest import free_port

    db = f"sqlite:///{tmp_path / 'ui.db'}"
    build_demo(db).close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ACE_TOKENS", "ACE_UI_TOKEN")}
    cmd = [sys.executable, "-m", "ace.cli", "ui", "--db", db, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.strip().endswith(f"at http://127.0.0.1:{port}/ui/"), first
        token = second.strip().rsplit(" ", 1)[-1]
        assert second.startswith("admin token") and len(token) >= 32
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(100):
                try:
                    form = client.get("/ui/login")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            done = client.post("/ui/login", data={"csrf": _csrf(form.text), "token": token}, headers={"Origin": base})
            assert done.status_code == 303
            home = client.get("/ui/")
            assert home.status_code == 200 and "support" in home.text and "secret" in home.text  # every namespace
            assert client.get("/v1/playbooks/team-a", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    short = subprocess.run([*cmd, "--token", "too-short"], capture_output=True, text=True, env=env, timeout=60)
    assert short.returncode == 1 and "at least 16 characters" in short.stderr


def test_a_partial_approval_refuses_a_long_reason_and_one_that_keeps_nothing_and_nothing_is_written(
    app: Any, store: PlaybookStore
) -> None:
    client = _client(app, REVIEWER)
    page = client.get("/ui/p/team-a/support/review").text
    # the edit box's example names a bullet of this change, not an id the playbook does not have
    example = re.search(r'placeholder=\'\{"operations": \[\{"type": "UPDATE", "id": "([^"]+)"', page)
    assert example is not None and example.group(1) == _id_of(store, PENDING_TEXT)
    csrf, url = _csrf(page), "/ui/p/team-a/support/review/approve"

    def untouched() -> None:
        assert store.head_version("support", namespace="team-a") == 7
        assert store.resolve("support", SERVING, namespace="team-a") == 6
        assert [m.reason for m in store.channel_log("support", namespace="team-a", channel="serving")][-1] != "x"

    long = "START" + "r" * 2990 + "END"
    for keep in (["7"], []):  # the whole change kept, or a part: the reason is refused as the API refuses it
        sent = client.post(url, data={"csrf": csrf, "to": "7", "part": "1", "keep": keep, "reason": long},
                           headers=ORIGIN)  # fmt: skip
        assert sent.status_code == 422 and "a reason is at most 2,000 characters, not 2,998" in sent.text
        assert long in sent.text  # the form as it was sent: nothing the reviewer wrote is lost
        untouched()
    nothing = client.post(url, data={"csrf": csrf, "to": "7", "part": "1", "reason": "none of it"}, headers=ORIGIN)
    assert nothing.status_code == 422 and "keeps no version" in nothing.text and "reject the change" in nothing.text
    untouched()
    log = store.channel_log("support", namespace="team-a", channel="serving")
    assert all("approved part" not in (m.reason or "") for m in log)
    at_limit = "START" + "r" * 1992 + "END"
    done = client.post(url, data={"csrf": csrf, "to": "7", "part": "1", "keep": ["7"], "reason": at_limit},
                       headers=ORIGIN)  # fmt: skip
    assert done.status_code == 200 and store.resolve("support", SERVING, namespace="team-a") == 7


def test_the_review_banner_shows_only_what_this_session_did(app: Any, store: PlaybookStore) -> None:
    client = _client(app, REVIEWER)
    for done in ("rejected", "approved", "part", "rejected.1.x", "approved." + str(int(time.time())) + "." + "0" * 32):
        page = client.get(f"/ui/p/team-a/support/review?done={done}").text
        assert 'class="notice"' not in page and "Rejected:" not in page and "Approved" not in page.split("<h2")[0]
    csrf = _csrf(client.get("/ui/p/team-a/support/review").text)
    sent = client.post("/ui/p/team-a/support/review/approve", data={"csrf": csrf, "to": "7"}, headers=ORIGIN,
                       follow_redirects=False)  # fmt: skip
    assert sent.status_code == 303 and "?done=approved." in sent.headers["location"]
    assert "Approved: serving is now v7" in client.get(sent.headers["location"]).text
    other = _client(app, REVIEWER)  # another session of the same token: the link is not its own
    assert 'class="notice"' not in other.get(sent.headers["location"]).text


def test_signing_out_ends_the_session_even_for_a_copied_cookie(app: Any) -> None:
    import base64

    client = _client(app, ADMIN)
    copied = client.cookies["ace_console"]
    encoded = base64.urlsafe_b64encode(ADMIN.encode()).decode().rstrip("=")
    assert ADMIN not in copied and encoded not in copied and encoded[:12] not in copied  # never the token

    def with_cookie(value: str) -> Any:
        return TestClient(app).get("/ui/", headers={"Cookie": f"ace_console={value}"}, follow_redirects=False)

    assert with_cookie(copied).status_code == 200
    nonce, rest = copied.split(".", 1)
    for forged in (
        "0" * 32 + "." + rest,  # another nonce
        f"{nonce}.{encoded}",  # the old form: a nonce and the token
        "0" * 32 + "." + encoded,
        copied[:-1] + ("0" if copied[-1] != "0" else "1"),  # the MAC changed
        copied.replace(".", ".9", 2),  # the times changed
    ):
        assert with_cookie(forged).status_code == 303, forged
    csrf = _csrf(client.get("/ui/").text)
    out = client.post("/ui/logout", data={"csrf": csrf}, headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303
    gone = with_cookie(copied)
    assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/login")
    assert _client(app, ADMIN).get("/ui/").status_code == 200  # signing in again starts a new session


def test_a_token_removed_or_demoted_in_the_tokens_file_stops_working_while_the_server_runs(
    store: PlaybookStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import os

    from ace.service import auth

    monkeypatch.setattr(auth, "RELOAD_S", 0.0)  # look at the file at every check (once a second when serving)
    path = tmp_path / "tokens.json"

    def write(table: dict[str, Any]) -> None:
        path.write_text(json.dumps(table))
        os.chmod(path, 0o600)
        stamp = time.time() + (len(path.read_text()) % 7) + 2  # a new mtime even where the clock is coarse
        os.utime(path, (stamp, stamp))

    write(TOKENS)
    app = create_app(store, Tokens.load(path))
    reader, reviewer = _client(app, READER), _client(app, REVIEWER)
    api = TestClient(app)
    bearer = {"Authorization": f"Bearer {READER}"}
    assert api.get("/v1/playbooks/team-a/support", headers=bearer).status_code == 200
    assert 'action="/ui/p/team-a/support/review/approve"' in reviewer.get("/ui/p/team-a/support/review").text
    csrf = _csrf(reviewer.get("/ui/p/team-a/support/review").text)
    changed = json.loads(json.dumps(TOKENS))
    del changed["tokens"][READER]
    changed["tokens"][REVIEWER]["role"] = "read"
    write(changed)
    assert api.get("/v1/playbooks/team-a/support", headers=bearer).status_code == 401
    assert reader.get("/ui/", follow_redirects=False).status_code == 303  # its session ended
    page = reviewer.get("/ui/p/team-a/support/review").text
    assert 'action="/ui/p/team-a/support/review/approve"' not in page
    refused = reviewer.post("/ui/p/team-a/support/review/approve", data={"csrf": csrf, "to": "7"}, headers=ORIGIN)
    assert refused.status_code == 403 and store.resolve("support", SERVING, namespace="team-a") == 6
    # a file that no longer loads keeps the tokens as they were, and says so: it never opens access
    with caplog.at_level(logging.ERROR, logger="ace.service.auth"):
        path.write_text('{"tokens": ')
        os.utime(path, (time.time() + 20, time.time() + 20))
        assert api.get("/v1/playbooks/team-a/support", headers=bearer).status_code == 401
        assert api.get("/v1/playbooks/team-a/support", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert "does not load" in caplog.text and "stay" in caplog.text


def test_the_newest_change_has_no_link_to_a_change_after_it(app: Any) -> None:
    client = _client(app, ADMIN)
    for url in ("/ui/p/team-a/support/diff", "/ui/p/team-a/support/diff?from=1&to=7", "/ui/p/team-b/secret/diff"):
        page = client.get(url)
        assert page.status_code == 200 and "the change after" not in page.text, url
    middle = client.get("/ui/p/team-a/support/diff?from=2&to=3").text
    assert 'diff?from=3&amp;to=4">the change after' in middle
    assert client.get("/ui/p/team-a/support/diff?from=6&to=7").status_code == 200


@pytest.mark.parametrize(
    ("asked", "goes"),
    [
        ("/ui/../../evil", "/ui/"),
        ("/ui/%2e%2e/%2E%2E/evil", "/ui/"),
        ("/ui/p/..", "/ui/"),
        ("/ui/p/../runs", "/ui/runs"),
        ("/ui/./p/team-a/support?x=1", "/ui/p/team-a/support?x=1"),
        ("https://evil.example/ui/", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
    ],
)
def test_where_to_go_after_signing_in_stays_under_the_console(app: Any, asked: str, goes: str) -> None:
    client = _client(app)
    nonce = _csrf(client.get("/ui/login", params={"next": asked}).text)
    done = client.post("/ui/login", data={"csrf": nonce, "token": ADMIN, "next": asked}, headers=ORIGIN,
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == goes
