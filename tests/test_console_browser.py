"""The console in a real browser: Debian's Chromium driven by Playwright (pointed at the system browser; Playwright's
own browser download needs the network) against a real `ace serve` process on 127.0.0.1.

A reviewer signs in through the form, opens every page, reads the diff of a known change (the added bullet's text
is on the page), approves the pending change through the form and sees serving move (on the page and through the
JSON API); a read token sees no write or review controls, and its POST from the page is refused. No page logs a
script error or a Content-Security-Policy violation. A screenshot of each page is written to
``$ACE_SCREENSHOTS_DIR`` (``ACE_SCREENSHOTS_DIR=docs/images`` remakes the ones in the docs), else to a temporary
directory.

Without Chromium or Playwright the tests are skipped saying so; under ``CI=true`` they fail instead
(``scripts/install`` installs both: the ``test`` extra and, as root, Debian's ``chromium``).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ace_serve
from tests.test_console import ADMIN, PENDING_TEXT, READER, REVIEWER, TOKENS, build_demo

pytestmark = pytest.mark.slow


def _browser_path() -> str:
    """The system Chromium, or a skip (a failure under CI) saying what is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    found = os.environ.get("ACE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        missing.append("chromium (apt-get install chromium; scripts/install does it as root)")
    if missing:
        why = "the console's browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(why + ": under CI they must run")
        pytest.skip(why)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ace serve` on a free port of 127.0.0.1 over the demo store (tests/test_console.py)."""
    _browser_path()
    where = tmp_path_factory.mktemp("console-browser")
    db = f"sqlite:///{where / 'console.db'}"
    build_demo(db).close()
    with ace_serve(db, TOKENS, where) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = _browser_path()
    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox cannot start as root (the tests run as root in CI's container)
        launched = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("ACE_SCREENSHOTS_DIR")
    target = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


class Page:
    """A browser tab signed in with a token, that records script errors and takes small screenshots."""

    def __init__(self, browser: Any, url: str, shots: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 760})
        self.page = self.context.new_page()
        self.url, self.shots = url, shots
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: d.accept())

    def sign_in(self, token: str, *, shot: bool = False) -> None:
        self.page.goto(f"{self.url}/ui/")
        assert "/ui/login" in self.page.url  # not signed in: sent to the sign-in page
        self.page.fill("#token", token)
        if shot:
            self.shot("login")
        self.page.click("#login button[type=submit]")
        self.page.wait_for_url(f"{self.url}/ui/")

    def open(self, path: str, shot: str | None = None) -> str:
        response = self.page.goto(f"{self.url}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        if shot:
            self.shot(shot)
        text: str = self.page.inner_text("main")
        return text

    def shot(self, name: str) -> None:
        """A screenshot of the viewport, as a 64-colour PNG (a few tens of KB)."""
        from PIL import Image

        path = self.shots / f"console-{name}.png"
        self.page.screenshot(path=str(path))
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)


def _api(url: str, path: str, token: str) -> Any:
    req = urllib.request.Request(f"{url}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_a_reviewer_reads_every_page_and_approves_through_the_form(server: str, browser: Any, shots: Path) -> None:
    tab = Page(browser, server, shots)
    tab.sign_in(REVIEWER, shot=True)
    home = tab.open("/ui/", "playbooks")
    assert "support" in home and "1 pending" in home
    pb = "/ui/p/team-a/support"
    overview = tab.open(pb, "playbook")
    assert "# playbook team-a/support v6" in tab.page.inner_text("#prompt") and "2,000-token budget" in overview
    tab.page.fill("#q", "order number")  # the page's own filter, as you type
    visible = [r for r in tab.page.query_selector_all("tr.bullet") if r.is_visible()]
    assert len(visible) == 1 and "order number" in visible[0].inner_text()
    timeline = tab.open(f"{pb}/timeline", "timeline")
    assert "v7" in timeline and "rita" not in timeline and "review" in timeline.lower()
    diff = tab.open(f"{pb}/diff?from=2&to=3", "diff")
    assert "Refunds after 30 days need a manager (MGR-7)." in diff and "added" in diff
    words = tab.open(f"{pb}/diff?from=1&to=2")
    assert tab.page.inner_text("ins") == ", with the receipt" and "changed" in words
    blame = tab.open(f"{pb}/blame/ref-00001", "blame")
    assert "UPDATE" in blame and "IMPORT" in blame and "q-1" in blame
    assert "Refunds are possible within 30 days of purchase, with the receipt." in blame
    episodes = tab.open(f"{pb}/episodes", "episodes")
    assert "run-2" in episodes and "the model said <script>no</script>" in episodes
    assert "Collapse check" in tab.open(f"{pb}/check", "check")
    review = tab.open(f"{pb}/review", "review")
    assert PENDING_TEXT in review and tab.page.inner_text("#serving") == "v6"
    assert _api(server, "/v1/playbooks/team-a/support/review", ADMIN)["serving"] == 6
    # leaving a version out turns it down: the page's script then asks for the reason
    assert not tab.page.eval_on_selector("#approve-reason", "e => e.required")
    tab.page.uncheck("#keep-7")
    assert tab.page.eval_on_selector("#approve-reason", "e => e.required")
    tab.page.check("#keep-7")
    tab.page.fill("#approve-reason", "checked in the console")
    tab.page.click("#approve button[type=submit]")  # the confirm dialog is accepted
    tab.page.wait_for_selector("p.notice")
    assert tab.page.inner_text("#serving") == "v7" and "Approved: serving is now v7" in tab.page.inner_text("main")
    channels = {c["channel"]: c["version"] for c in _api(server, "/v1/playbooks/team-a/support/channels", ADMIN)}
    assert channels["serving"] == 7
    assert "v7 (serving)" in tab.open(pb)
    tab.open(f"{pb}/timeline")
    moves = tab.page.inner_text("#moves")  # the approval marked as one among the channel moves
    assert "approval" in moves and "checked in the console" in moves
    assert not tab.errors, tab.errors  # no script error, no Content-Security-Policy violation
    tab.context.close()


def test_a_read_token_sees_no_controls_and_its_post_is_refused(server: str, browser: Any, shots: Path) -> None:
    tab = Page(browser, server, shots)
    tab.sign_in(READER)
    for path in ["/ui/", "/ui/p/team-a/support", "/ui/p/team-a/support/review", "/ui/p/team-a/support/timeline"]:
        tab.open(path)
        actions = [f.get_attribute("action") for f in tab.page.query_selector_all("form[method=post]")]
        assert actions == ["/ui/logout"], (path, actions)
        assert tab.page.query_selector("#approve") is None and tab.page.query_selector("#reject") is None
    review = tab.open("/ui/p/team-a/support/review")  # pending, or approved by the test before
    assert "may not approve" in review or "Nothing waits" in review
    # a POST made from the page anyway, with the session's own CSRF token: the service's role check refuses it
    status = tab.page.evaluate(
        """async () => {
            const csrf = document.querySelector("input[name=csrf]").value;
            const body = new URLSearchParams({csrf: csrf, to: "7"});
            const r = await fetch("/ui/p/team-a/support/review/approve", {method: "POST", body: body});
            return r.status;
        }"""
    )
    assert status == 403
    assert tab.errors == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]
    tab.errors.clear()
    # the cookie holding the token is out of the page's reach
    assert tab.page.evaluate("document.cookie") == ""
    cookie = next(c for c in tab.context.cookies() if c["name"] == "ace_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui/"
    tab.page.click("header button[type=submit]")  # sign out
    tab.page.wait_for_url("**/ui/login")
    assert not tab.errors, tab.errors
    tab.context.close()
