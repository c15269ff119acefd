"""Agent files: a playbook as an Agent Skills folder (SKILL.md) and as a marked block in AGENTS.md / CLAUDE.md
(ace.playbook.agentfiles, pure), ``ace playbook export|import --format skill|agents-md`` and ``ace sync`` on real
files and a real SQLite store."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from ace.cli import app
from ace.playbook import Bullet, Delta, Playbook, apply
from ace.playbook.agentfiles import (
    SKILL_NAME_MAX,
    AgentFileError,
    HandEdited,
    Origin,
    body_digest,
    find_blocks,
    parse_agents_md,
    parse_skill,
    render_block,
    skill_name,
    sync_block,
    to_agents_md,
    to_skill,
    valid_skill_name,
)
from ace.playbook.formats import parse_ace, to_ace

runner = CliRunner()


def same_bullets(a: Playbook, b: Playbook) -> None:
    """Same sections in the same order, same bullets (id, section, content, helpful, harmful) in the same order."""
    assert [(s.name, s.ids) for s in a.sections.values()] == [(s.name, s.ids) for s in b.sections.values()]
    assert [(x.id, x.section, x.content, x.helpful, x.harmful) for x in a] == [
        (y.id, y.section, y.content, y.helpful, y.harmful) for y in b
    ]


def learned(pb: Playbook) -> Playbook:
    """``pb`` after a step: counters and a multi-line bullet."""
    first = next(iter(pb)).id
    delta = Delta.parse(
        {
            "operations": [
                {"type": "TAG", "id": first, "tag": "helpful"},
                {"type": "TAG", "id": first, "tag": "helpful"},
                {"type": "TAG", "id": first, "tag": "harmful"},
                {"type": "ADD", "section": "LEARNED LESSONS", "content": "Check the totals twice.\nThen report them."},
            ]
        }
    )
    return apply(pb, delta).playbook


HOSTILE_LINES = [
    "---",
    "<!-- ace:end -->",
    '<!-- ace:end playbook="hostile" -->',
    '<!-- ace:begin playbook="hostile" version="9" digest="sha256:0" -->',
    "```",
    "~~~",
    "## NOT A SECTION",
    "[fake-00001] helpful=99 harmful=0 :: not a bullet",
]


def hostile() -> Playbook:
    """Content and section names that look like markers, front matter delimiters, fences, headers and bullets."""
    bullets = [
        Bullet("hos-00001", "<!-- ace:end -->", "\n".join(["First line of a rule.", *HOSTILE_LINES])),
        Bullet("hos-00002", "<!-- ace:end -->", "<!-- ace:end --> at the start of a bullet", helpful=3, harmful=1),
        Bullet("dash-00003", "---", "--- a bullet that starts with three dashes"),
        Bullet("uni-00004", "Ünïcödé ✓", "Émoji 👩‍💻 and ünïcode, right-to-left: שלום"),
    ]
    return Playbook.from_sections(
        [("<!-- ace:end -->", bullets[:2]), ("---", bullets[2:3]), ("Ünïcödé ✓", bullets[3:])]
    )


HOSTILE_NAME = 'ops "team" --> <b>&amp; ✓'


# -- the pure module ------------------------------------------------------------------------------------------------
def test_released_playbooks_round_trip_through_a_skill_and_a_block(released_playbooks: list[Path]) -> None:
    for path in released_playbooks:
        pb = parse_ace(path.read_text(encoding="utf-8"))
        for version in (pb, learned(pb)):
            origin = Origin("appworld", 4, digest=version.digest(), channel="serving")
            skill = parse_skill(to_skill(version, origin))
            assert skill.problems == [] and skill.origin == origin and skill.name == "appworld"
            same_bullets(skill.playbook, version)
            assert to_ace(skill.playbook) == to_ace(version)
            block = parse_agents_md(to_agents_md(version, origin))
            assert block.problems == [] and block.origin == Origin("appworld", 4)
            same_bullets(block.playbook, version)
        # the released playbooks have no counters, neutral counts nor provenance: the digest comes back too
        assert parse_skill(to_skill(pb, Origin("p", 1))).playbook.digest() == pb.digest()


def test_hostile_content_stays_content() -> None:
    pb = hostile()
    origin = Origin(HOSTILE_NAME, 2, namespace="team/α", channel="serving")
    text = to_skill(pb, origin)
    # the front matter is the first two '---' lines, and it is YAML that says what ace wrote
    lines = text.split("\n")
    end = lines.index("---", 1)
    assert lines[0] == "---" and end == 9  # name, description, metadata and its 6 entries
    meta = yaml.safe_load("\n".join(lines[1:end]))["metadata"]
    assert meta["ace-playbook"] == HOSTILE_NAME and meta["ace-namespace"] == "team/α" and meta["ace-version"] == "2"
    # one block, whose markers are the only marker lines: the name cannot close the comment
    marker_lines = [ln for ln in lines if ln.startswith("<!-- ace:")]
    assert len(marker_lines) == 2 and all(ln.count("-->") == 1 for ln in marker_lines)
    found = parse_skill(text)
    assert found.problems == [] and found.origin.playbook == HOSTILE_NAME and found.origin.namespace == "team/α"
    same_bullets(found.playbook, pb)
    back = parse_agents_md(to_agents_md(pb, origin))
    same_bullets(back.playbook, pb)
    # synced into a file that has markers of its own in a code fence: those are examples, left alone
    doc = '# Notes\n\n```text\n<!-- ace:begin playbook="x" version="1" digest="sha256:0" -->\n```\n\nEnd.\n'
    synced = sync_block(doc, pb, origin)
    assert synced.text.startswith(doc) and sync_block(synced.text, pb, origin).action == "unchanged"
    assert [b.playbook for b in find_blocks(synced.text)] == [HOSTILE_NAME]


def test_a_file_keeps_every_byte_outside_its_block() -> None:
    pb, origin = hostile(), Origin("p", 1)
    after = learned(pb)
    for head, tail in [
        ("# Agents\r\n\r\nUse CRLF.\r\n", ""),  # CRLF
        ("no final newline", ""),
        ("line\u2028separator and form\x0cfeed\u0085 and \ufeffBOM-like\n", ""),
        ("", ""),
        ("\ufeff# with a byte-order mark\n\n", ""),
    ]:
        text = head + tail
        created = sync_block(text, pb, origin)
        assert created.action == "created" and created.text.startswith(text)
        nl = "\r\n" if "\r\n" in head else "\n"
        block = created.text[len(text) :].strip("\r\n")
        assert block == render_block(pb, origin, newline=nl)
        assert created.text.endswith(block + nl)
        again = sync_block(created.text, pb, origin)
        assert again.action == "unchanged" and again.text == created.text
        # text after the block (a user's own lines) and before it survive an update byte for byte
        framed = created.text + "after\u2028the block, no final newline"
        updated = sync_block(framed, after, Origin("p", 2))
        assert updated.action == "updated"
        [old_block], [new_block] = find_blocks(framed), find_blocks(updated.text)
        start, end, new_start, new_end = old_block.start, old_block.end, new_block.start, new_block.end
        assert framed[end:].startswith(nl + "after") and (start == 0 or framed[start - 1] == "\n")
        assert updated.text[:new_start] == framed[:start] and updated.text[new_end:] == framed[end:]
        assert updated.text[new_start:new_end] == render_block(after, Origin("p", 2), newline=nl)
        assert sync_block(updated.text, after, Origin("p", 2)).action == "unchanged"


def test_a_block_edited_by_hand_is_refused_unless_forced() -> None:
    pb, origin = hostile(), Origin("p", 1)
    text = "# Agents\n\n" + to_agents_md(pb, origin) + "\nMore.\n"
    for old, new in [
        ("helpful=3", "helpful=4"),
        ("First line of a rule.", "First line of a rule, edited."),
        ("First line of a rule.", "First line\u2028of a rule."),
        ("## ---\n", "## ---\n[x-00009] helpful=0 harmful=0 :: An added line.\n"),
    ]:
        edited = text.replace(old, new)
        assert edited != text
        with pytest.raises(HandEdited, match="edited by hand"):
            sync_block(edited, learned(pb), Origin("p", 2))
        forced = sync_block(edited, learned(pb), Origin("p", 2), force=True)
        assert forced.action == "updated" and forced.text.endswith("\nMore.\n") and forced.text.startswith("# Agents\n")
        assert parse_agents_md(forced.text).problems == []
        assert parse_agents_md(edited).problems  # and reading it back says so
    # only the line endings changed: the same body
    crlf = text.replace("\n", "\r\n")
    assert sync_block(crlf, pb, origin).action == "unchanged"


def test_malformed_blocks_are_reported_with_their_line() -> None:
    block = to_agents_md(Playbook.empty(["S"]), Origin("p", 1))
    cases = {
        "begin without end": ("intro\n" + block.split("\n")[0] + "\n## S\n", "no ace:end", 2),
        "end without begin": ("intro\n<!-- ace:end -->\n", "without an ace:begin", 2),
        "nested": (block.split("\n")[0] + "\n" + block, "begins inside", 2),
        "unclosed fence": ("```\n" + block, "never closed", 1),
        "bad attributes": ('<!-- ace:begin playbook="p" version=1 -->\n<!-- ace:end -->\n', "attributes", 1),
        "mismatched end": (block.replace('ace:end playbook="p"', 'ace:end playbook="q"'), "ends with a marker", 3),
    }
    for what, (text, message, line) in cases.items():
        with pytest.raises(AgentFileError, match=message) as e:
            find_blocks(text)
        assert e.value.line == line, what
    two = block + block
    with pytest.raises(AgentFileError, match="2 blocks"):
        sync_block(two, Playbook.empty(), Origin("p", 2))


def test_blocks_of_two_playbooks_live_side_by_side() -> None:
    a, b = hostile(), learned(hostile())
    text = sync_block(sync_block("# Agents\n", a, Origin("a", 1)).text, b, Origin("b", 5)).text
    updated = sync_block(text, b, Origin("a", 2)).text
    assert [(x.playbook, x.version) for x in find_blocks(updated)] == [("a", 2), ("b", 5)]
    assert updated[updated.index('<!-- ace:begin playbook="b"') :] == text[text.index('<!-- ace:begin playbook="b"') :]
    with pytest.raises(AgentFileError, match="name the one"):
        parse_agents_md(updated)
    assert parse_agents_md(updated, "b").origin == Origin("b", 5)


def test_skill_edits_are_found() -> None:
    pb = learned(hostile())
    text = to_skill(pb, Origin("p", 3, digest=pb.digest(), channel="serving"))
    assert parse_skill(text).problems == []
    assert parse_skill(text.replace("Check the totals twice.", "Check the totals once.")).problems
    assert parse_skill(text.replace("ace-version: '3'", "ace-version: '4'")).problems
    # prose around the block is not the playbook: editing it is not a hand edit of the playbook
    assert parse_skill(text.replace("learned by ACE", "learned by ACE (our notes)")).problems == []
    for bad, message in [
        ("no front matter\n", "front matter"),
        ("---\nname: x\n", "closing"),
        ("---\n[: x\n---\n", "not YAML"),
        ("---\nname: x\ndescription: y\n---\nbody\n", "not a skill exported by ace"),
    ]:
        with pytest.raises(AgentFileError, match=message):
            parse_skill(bad)


@given(st.text(max_size=200))
def test_skill_names_follow_the_agent_skills_rules(name: str) -> None:
    slug = skill_name(name)
    assert valid_skill_name(slug) and len(slug) <= SKILL_NAME_MAX
    assert "--" not in slug and not slug.startswith("-") and not slug.endswith("-")


def test_skill_names() -> None:
    assert skill_name("Support Bot v2") == "support-bot-v2"
    assert skill_name("Café/équipe__rules") == "cafe-equipe-rules"
    assert skill_name("✓✓") == "playbook"
    assert skill_name("a" * 100) == "a" * 64
    assert not valid_skill_name("Upper") and not valid_skill_name("a--b") and not valid_skill_name("-a")
    with pytest.raises(AgentFileError, match="not a skill name"):
        to_skill(Playbook.empty(), Origin("p", 1), name="Not Valid")
    with pytest.raises(AgentFileError, match="U\\+2028"):
        to_skill(Playbook.empty(), Origin("p\u2028q", 1))
    with pytest.raises(AgentFileError, match="1 to 1024"):
        to_skill(Playbook.empty(), Origin("p", 1), description="x" * 1025)


def test_the_body_digest_ignores_line_endings_only() -> None:
    assert body_digest("a\nb") == body_digest("a\r\nb") != body_digest("a\nb\n") != body_digest("a b")


# -- the CLI ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agents.db'}"


def ace(*args: str, db: str) -> Result:
    return runner.invoke(app, [*args, "--db", db])


def test_export_a_skill_and_import_it_back(db: str, tmp_path: Path, shared_data: Path) -> None:
    trained = shared_data / "playbooks" / "appworld_offline_trained_no_gt_playbook.txt"
    assert ace("playbook", "import", "app", str(trained), db=db).exit_code == 0
    delta = tmp_path / "delta.json"
    delta.write_text(json.dumps({"operations": [{"type": "TAG", "id": "shr-00001", "tag": "helpful"}]}))
    assert ace("playbook", "apply", "app", str(delta), db=db).exit_code == 0
    folder = tmp_path / ".claude" / "skills" / "app-rules"
    r = ace("playbook", "export", "app", "--format", "skill", "--out", str(folder), db=db)
    assert r.exit_code == 0, r.output
    text = (folder / "SKILL.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["name"] == "app-rules" and 0 < len(front["description"]) <= 1024
    history = json.loads(ace("playbook", "history", "app", "--json", db=db).stdout)
    assert front["metadata"] == {
        "ace-format": "ace.skill/v1",
        "ace-playbook": "app",
        "ace-namespace": "default",
        "ace-version": "2",
        "ace-digest": history[-1]["digest"],
        "ace-channel": "serving",
    }
    for source in (folder, folder / "SKILL.md"):
        name = f"back-{source.name}"
        r = ace("playbook", "import", name, str(source), db=db)
        assert r.exit_code == 0, r.output
        r2 = ace("playbook", "export", name, db=db)
        assert r2.stdout == ace("playbook", "export", "app", db=db).stdout
        message = json.loads(ace("playbook", "history", name, "--json", db=db).stdout)[0]["message"]
        assert message == f"import {source.name}: default/app v2 (serving)"
    # a folder whose name is not a skill name: the skill is named after the playbook, and the user told
    r = ace("playbook", "export", "app", "--format", "skill", "--out", str(tmp_path / "My Skills"), db=db)
    assert r.exit_code == 0 and "not a skill name" in r.stderr
    assert yaml.safe_load((tmp_path / "My Skills" / "SKILL.md").read_text().split("---\n")[1])["name"] == "app"
    # stdout: the SKILL.md text
    r = ace("playbook", "export", "app", "--format", "skill", "--version", "1", db=db)
    assert r.exit_code == 0 and r.stdout.startswith("---\nname: app\n") and "ace-version: '1'" in r.stdout


def test_a_hand_edited_skill_is_refused_unless_forced(db: str, tmp_path: Path, shared_data: Path) -> None:
    released = shared_data / "playbooks" / "appworld_initial_playbook.txt"
    assert ace("playbook", "import", "app", str(released), db=db).exit_code == 0
    folder = tmp_path / "app"
    assert ace("playbook", "export", "app", "--format", "skill", "--out", str(folder), db=db).exit_code == 0
    skill = folder / "SKILL.md"
    skill.write_text(
        skill.read_text().replace("helpful=0 harmful=0 :: Always look", "helpful=7 harmful=0 :: Always look")
    )
    r = ace("playbook", "import", "edited", str(folder), db=db)
    assert r.exit_code == 1 and "edited by hand" in r.stderr and "--force" in r.stderr
    assert "edited" not in ace("playbook", "list", db=db).stdout  # nothing was written
    r = ace("playbook", "import", "edited", str(folder), "--force", "--author", "me", db=db)
    assert r.exit_code == 0, r.output
    entry = json.loads(ace("playbook", "history", "edited", "--json", db=db).stdout)[0]
    assert "edited by hand since (forced)" in entry["message"] and entry["author"] == "me"
    assert "[shr-00005] helpful=7" in ace("playbook", "show", "edited", db=db).stdout


def test_ace_sync_keeps_a_block_up_to_date(db: str, tmp_path: Path, shared_data: Path) -> None:
    released = shared_data / "playbooks" / "appworld_initial_playbook.txt"
    assert ace("playbook", "import", "app", str(released), db=db).exit_code == 0
    agents = tmp_path / "AGENTS.md"
    original = "# Agents\r\n\r\nRun the tests with ünïcode ✓\u2028 and no final newline".encode()
    agents.write_bytes(original)
    agents.chmod(0o640)
    claude = tmp_path / "CLAUDE.md"
    claude.symlink_to(agents.name)

    r = ace("sync", str(agents), "--playbook", "app", "--check", db=db)
    assert r.exit_code == 1 and "no block of app" in r.stderr and agents.read_bytes() == original
    r = ace("sync", str(claude), "--playbook", "app", db=db)  # through the link
    assert r.exit_code == 0 and "added the block of app v1" in r.stdout, r.output
    assert claude.is_symlink() and stat.S_IMODE(agents.stat().st_mode) == 0o640
    first = agents.read_bytes()
    assert first.startswith(original) and b"\r\n<!-- ace:end" in first and first.endswith(b"-->\r\n")

    r = ace("sync", str(agents), "--playbook", "app", db=db)
    assert r.exit_code == 0 and "up to date" in r.stdout and agents.read_bytes() == first
    assert ace("sync", str(agents), "--playbook", "app", "--check", db=db).exit_code == 0

    delta = tmp_path / "delta.json"
    delta.write_text(json.dumps({"operations": [{"type": "TAG", "id": "shr-00001", "tag": "helpful"}]}))
    assert ace("playbook", "apply", "app", str(delta), db=db).exit_code == 0
    r = ace("sync", str(agents), "--playbook", "app", "--check", db=db)
    assert r.exit_code == 1 and "app v1 (serving is v2)" in r.stderr and agents.read_bytes() == first
    r = ace("sync", str(agents), "--playbook", "app", db=db)
    assert r.exit_code == 0 and "v1 → v2" in r.stdout
    second = agents.read_bytes()
    assert second.startswith(original) and b"[shr-00001] helpful=1" in second and second != first

    # serving pinned at v1: the block follows serving; --version picks one
    assert ace("playbook", "promote", "app", "1", db=db).exit_code == 0
    assert "v2 → v1" in ace("sync", str(agents), "--playbook", "app", db=db).stdout
    assert "v1 → v2" in ace("sync", str(agents), "--playbook", "app", "--version", "2", db=db).stdout
    assert ace("sync", str(agents), "--playbook", "app", "--channel", "candidate", db=db).exit_code == 0
    assert ace("sync", str(agents), "--playbook", "app", "--channel", "candidate", "--check", db=db).exit_code == 0
    r = ace("sync", str(agents), "--playbook", "app", "--channel", "serving", "--version", "1", db=db)
    assert r.exit_code == 2

    # a hand edit is refused (nothing written), reported by --check, and overwritten with --force
    edited = agents.read_bytes().replace(b"Always look at API", b"Never look at API")
    agents.write_bytes(edited)
    r = ace("sync", str(agents), "--playbook", "app", "--version", "1", db=db)
    assert r.exit_code == 1 and "edited by hand" in r.stderr and "--force" in r.stderr
    assert agents.read_bytes() == edited
    r = ace("sync", str(agents), "--playbook", "app", "--version", "2", "--check", db=db)
    assert r.exit_code == 1 and agents.read_bytes() == edited
    r = ace("sync", str(agents), "--playbook", "app", "--version", "2", "--force", db=db)
    assert r.exit_code == 0 and "edited by hand: --force" in r.stdout
    assert agents.read_bytes() == second and claude.is_symlink()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left

    # the block reads back as a playbook; export --format agents-md writes the same block
    r = ace("playbook", "import", "again", str(agents), db=db)
    assert r.exit_code == 0, r.output
    assert ace("playbook", "export", "again", db=db).stdout == ace("playbook", "export", "app", db=db).stdout
    block = ace("playbook", "export", "app", "--format", "agents-md", "--version", "2", db=db).stdout
    assert block.replace("\n", "\r\n").encode() in agents.read_bytes()


def test_ace_sync_creates_a_missing_file_and_refuses_what_it_cannot_read(db: str, tmp_path: Path) -> None:
    assert ace("playbook", "import", "p", str(Path(__file__).parents[1] / "playbooks" / "finance.txt"),
               db=db).exit_code == 0  # fmt: skip
    new = tmp_path / "CLAUDE.md"
    r = ace("sync", str(new), "--playbook", "p", "--check", db=db)
    assert r.exit_code == 1 and "does not exist" in r.stderr and not new.exists()
    r = ace("sync", str(new), "--playbook", "p", db=db)
    assert r.exit_code == 0 and "created with the block of p v1" in r.stdout
    assert new.read_text().startswith("<!-- ace:begin") and oct(stat.S_IMODE(new.stat().st_mode)) == oct(
        0o666 & ~_umask()
    )
    binary = tmp_path / "binary.md"
    binary.write_bytes(b"\xff\xfe not utf-8")
    r = ace("sync", str(binary), "--playbook", "p", db=db)
    assert r.exit_code == 1 and "not UTF-8" in r.stderr and binary.read_bytes() == b"\xff\xfe not utf-8"
    r = ace("sync", str(tmp_path), "--playbook", "p", db=db)
    assert r.exit_code == 1
    r = ace("sync", str(new), "--playbook", "missing", db=db)
    assert r.exit_code == 1 and "missing" in r.stderr


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_never_writes_through_a_link_nor_over_a_file_unless_forced(db: str, tmp_path: Path) -> None:
    assert ace("playbook", "import", "p", str(Path(__file__).parents[1] / "playbooks" / "finance.txt"),
               db=db).exit_code == 0  # fmt: skip
    victim = tmp_path / "victim.txt"
    victim.write_text("victim\n")
    evil = tmp_path / "skl" / "evil"
    evil.mkdir(parents=True)
    (evil / "SKILL.md").symlink_to(victim)
    for force in ((), ("--force",)):  # a link is refused even with --force
        r = ace("playbook", "export", "p", "--format", "skill", "--out", str(evil), *force, db=db)
        assert r.exit_code == 1 and "symbolic link" in r.stderr and victim.read_text() == "victim\n", r.output
    folder = tmp_path / "p"
    assert ace("playbook", "export", "p", "--format", "skill", "--out", str(folder), db=db).exit_code == 0
    (folder / "SKILL.md").write_text("my own notes\n")
    r = ace("playbook", "export", "p", "--format", "skill", "--out", str(folder), db=db)
    assert r.exit_code == 1 and "exists" in r.stderr and (folder / "SKILL.md").read_text() == "my own notes\n"
    r = ace("playbook", "export", "p", "--format", "skill", "--out", str(folder), "--force", db=db)
    assert r.exit_code == 0 and (folder / "SKILL.md").read_text().startswith("---\n")
    agents = tmp_path / "AGENTS.md"
    agents.write_text("# Our rules\n\nKeep this.\n")
    r = ace("playbook", "export", "p", "--format", "agents-md", "--out", str(agents), db=db)
    assert r.exit_code == 1 and "ace sync" in r.stderr and agents.read_text() == "# Our rules\n\nKeep this.\n"
    r = ace("playbook", "export", "p", "--format", "agents-md", "--out", str(agents), "--force", db=db)
    assert r.exit_code == 0 and agents.read_text().startswith("<!-- ace:begin")


def test_a_skill_whose_front_matter_digest_is_wrong_is_refused(db: str, tmp_path: Path) -> None:
    assert ace("playbook", "import", "p", str(Path(__file__).parents[1] / "playbooks" / "finance.txt"),
               db=db).exit_code == 0  # fmt: skip
    folder = tmp_path / "p"
    assert ace("playbook", "export", "p", "--format", "skill", "--out", str(folder), db=db).exit_code == 0
    skill = folder / "SKILL.md"
    text = skill.read_text()
    digest = yaml.safe_load(text.split("---\n")[1])["metadata"]["ace-digest"]
    skill.write_text(text.replace(f"ace-digest: {digest}", "ace-digest: " + "0" * len(digest)))
    r = ace("playbook", "import", "e4", str(folder), db=db)
    assert r.exit_code == 1 and "ace-digest" in r.stderr and "--force" in r.stderr, r.output
    assert ace("playbook", "import", "e4", str(folder), "--force", db=db).exit_code == 0


def test_ace_sync_says_clearly_what_it_cannot_write(db: str, tmp_path: Path) -> None:
    assert ace("playbook", "import", "p", str(Path(__file__).parents[1] / "playbooks" / "finance.txt"),
               db=db).exit_code == 0  # fmt: skip
    r = ace("sync", str(tmp_path / "sub" / "dir" / "new.md"), "--playbook", "p", db=db)
    assert r.exit_code == 1 and "the folder" in r.stderr and "does not exist" in r.stderr and ".tmp" not in r.stderr
    dangling = tmp_path / "dangling.md"
    dangling.symlink_to(tmp_path / "nowhere" / "target.md")
    r = ace("sync", str(dangling), "--playbook", "p", db=db)
    assert r.exit_code == 1 and "symbolic link" in r.stderr and ".tmp" not in r.stderr and "Errno" not in r.stderr
    r = ace("sync", str(tmp_path), "--playbook", "p", db=db)
    assert r.exit_code == 1 and "is a directory" in r.stderr and "Errno" not in r.stderr
    ro = tmp_path / "ro.md"
    ro.write_text("# mine\n")
    ro.chmod(0o444)
    r = ace("sync", str(ro), "--playbook", "p", db=db)
    assert r.exit_code == 1 and "read-only" in r.stderr and ro.read_text() == "# mine\n"
    r = ace("sync", str(ro), "--playbook", "p", "--force", db=db)
    assert r.exit_code == 0 and "ace:begin" in ro.read_text() and stat.S_IMODE(ro.stat().st_mode) == 0o444
    fenced = tmp_path / "fenced.md"
    fenced.write_text("```\nunclosed\n")
    r = ace("sync", str(fenced), "--playbook", "p", db=db)
    assert r.exit_code == 1 and "agent file playbook" not in r.stderr and str(fenced) in r.stderr, r.output
