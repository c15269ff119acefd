"""Tiered memory on real parts: the short-term buffer, the episodic tier on ChromaDB (a persistent directory and a
`chroma run` server on 127.0.0.1 with several writer processes) and on PostgreSQL with pgvector (the same tests, on a
real server: scripts/pgvector-up), the knowledge graph on SQLite and PostgreSQL, the fused context, namespaces, and
the loop using all three tiers."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ace.errors import InvalidInput
from ace.llm import LLM
from ace.llm.embeddings import MiniLMEmbedder
from ace.llm.openai import OpenAIProvider
from ace.loop import LoopConfig, LoopContext, RunSetup, run
from ace.memory import Episode, KnowledgeGraph, Memory, MemoryConfig, ShortTermBuffer, assemble, open_episodic
from ace.memory.pgvector import is_postgres_url
from ace.playbook import approx_tokens
from ace.playbook.formats import parse_ace
from ace.store import PlaybookStore
from ace.tasks import EVALUATORS, Task
from tests.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
START_PB = parse_ace((ROOT / "playbooks" / "finance.txt").read_text())


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


# -- short-term buffer ---------------------------------------------------------------------------------------------
def test_buffer_evicts_oldest_first_under_its_budget_and_round_trips() -> None:
    buf = ShortTermBuffer(budget=20)
    for i in range(5):
        buf.add(i, "note", f"entry {i} " + "x" * 20)  # ~7-8 tokens each
    assert buf.tokens <= 20 and [e.step for e in buf.entries()] == [3, 4]
    evicted = buf.add(5, "note", "y" * 400)  # alone over budget: cut to fit, everything else evicted
    assert [e.step for e in evicted] == [3, 4] and len(buf) == 1 and buf.tokens <= 20
    assert buf.entries()[0].text.endswith("…")
    again = ShortTermBuffer.from_list(20, buf.to_list())
    assert again.entries() == buf.entries()
    with pytest.raises(ValueError):
        ShortTermBuffer(budget=0)


# -- episodic store ------------------------------------------------------------------------------------------------
@pytest.fixture(params=["chroma", pytest.param("pgvector", marks=pytest.mark.postgres)])
def episodes_at(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the episodic tier lives: each episodic test runs on a Chroma directory and on a fresh PostgreSQL
    database with pgvector."""
    if request.param == "chroma":
        return str(tmp_path / "chroma")
    url: str = request.getfixturevalue("pgvector_url")
    return url


def _store_beside(episodes_at: str, tmp_path: Path, name: str) -> PlaybookStore:
    """The playbook store of a test: the same PostgreSQL database as the episodes (one engine), else SQLite."""
    return PlaybookStore(episodes_at if is_postgres_url(episodes_at) else f"sqlite:///{tmp_path / name}")


def _episodes(n: int, prefix: str = "e") -> list[Episode]:
    topics = ["current ratio", "gross margin", "EBITDA", "dividend yield", "inventory turnover"]
    return [
        Episode(
            id=f"{prefix}{i}",
            task=f"Compute the {topics[i % 5]} for company {i}",
            summary=f"answered {i}",
            outcome="success" if i % 2 else "failure",
            playbook="fin",
            version=i + 1,
            created_at=1000.0 + i,
        )
        for i in range(n)
    ]


def test_persistent_episodes_are_found_again_after_reopening_with_filters(episodes_at: str, embedder: Any) -> None:
    store = open_episodic(episodes_at, embedder, namespace="a")
    store.add(_episodes(20))
    reopened = open_episodic(episodes_at, embedder, namespace="a")  # a new client on the same directory / database
    assert reopened.count() == 20
    assert all(reopened.get(f"e{i}") == _episodes(20)[i] for i in range(20))
    hits = reopened.search("What is the dividend yield of company 13?", 5)
    assert hits[0].episode.id == "e13" and all("dividend yield" in h.episode.task for h in hits[:4])
    assert hits[0].similarity > hits[-1].similarity
    failures = reopened.search("dividend yield", 10, outcome="failure")
    assert failures and all(h.episode.outcome == "failure" for h in failures)
    window = reopened.search("ratio", 20, since=1005.0, until=1009.0)
    assert sorted(h.episode.id for h in window) == [f"e{i}" for i in range(5, 10)]
    store.add(_episodes(3))  # an upsert: repeating a write does not duplicate
    assert reopened.count() == 20


def test_no_read_crosses_a_namespace(tmp_path: Path, episodes_at: str, embedder: Any) -> None:
    db = _store_beside(episodes_at, tmp_path, "ns.db")
    a = Memory.local(db, episodes_at, namespace="tenant-a", embedder=embedder)
    b = Memory.local(db, episodes_at, namespace="tenant-b", embedder=embedder)
    db.create("fin", START_PB, namespace="tenant-a")
    assert a.episodic is not None and b.episodic is not None and a.graph is not None and b.graph is not None
    a.episodic.add(_episodes(5, "same-id-"))
    a.graph.add("Acme", "reporting_currency", "USD", valid_from=1)
    a.graph.link_bullet("Acme", "fin", "calc-00002")
    assert b.episodic.count() == 0 and b.episodic.search("current ratio", 5) == []
    assert b.episodic.get("same-id-1") is None
    b.episodic.add(_episodes(2, "same-id-"))  # the same ids in another namespace are other episodes
    assert a.episodic.count() == 5 and b.episodic.count() == 2
    assert b.graph.facts() == [] and b.graph.bullets("Acme") == [] and b.graph.mentioned("Acme") == []
    assert [p.name for p in db.list("tenant-b")] == []
    ctx = b.context(Task(id="t", input="Acme current ratio?"), START_PB, budget=None)
    assert "Acme" not in ctx.text and "same-id" not in ctx.text


HOSTILE = {
    "markup": "x[bold]y[/bold] [/]",
    "emoji code": ":thumbs_up:",
    "escape sequence": "esc\x1b[31mred",
    "bidi override": "abc\u202edef",
    "line separator": "a\u2028b",
    "SQL": "'; DROP TABLE ace_playbooks; --",
    "quotes": "a \"quoted\" 'name'",
    "backslash": "a\\b",
    "not NFC": "e\u0301te",
    "astral": "\U0001f600\U00010348",
}


def test_hostile_text_and_namespaces_round_trip_or_are_refused_whole(episodes_at: str, embedder: Any) -> None:
    """Every field of an episode, and the namespace, may hold hostile text: it comes back exactly, and namespaces
    that look alike (the same slug) stay apart. Text no tier can store (a lone surrogate; on PostgreSQL a NUL) is
    refused in one clear error, and nothing of its batch is written."""
    names = ["a", "A", "a!", "'; DROP TABLE ace_kg_facts; --", 'ns "quoted"', "é", "e\u0301", "x" * 300]
    tiers = {ns: open_episodic(episodes_at, embedder, namespace=ns) for ns in names}
    for n, (ns, tier) in enumerate(tiers.items()):
        eps = [
            Episode(id=f"{key}-{n}", task=value, summary=value, reflection=value, playbook=value, run_id=value,
                    outcome="success", created_at=float(i))
            for i, (key, value) in enumerate(HOSTILE.items())
        ]  # fmt: skip
        tier.add(eps)
        again = open_episodic(episodes_at, embedder, namespace=ns)
        assert again.count() == len(HOSTILE), ns
        assert [again.get(e.id) for e in eps] == eps
        assert again.search(HOSTILE["SQL"], 1)[0].episode.id == f"SQL-{n}"
        assert again.search("anything", 3, playbook=HOSTILE["quotes"])[0].episode.id == f"quotes-{n}"
    long = "y" * 100_000
    tier = tiers["a"]
    tier.add([Episode(id="long", task=long, summary="s")])
    got = tier.get("long")
    assert got is not None and long.startswith(got.task) and len(got.task) >= 4000  # Chroma keeps 4,000 characters
    before = tier.count()
    with pytest.raises(InvalidInput, match="lone surrogate"):
        tier.add([Episode(id="fine", task="fine", summary="s"), Episode(id="bad", task="a\ud800b", summary="s")])
    with pytest.raises(InvalidInput, match="id must not be empty"):
        tier.add([Episode(id="", task="t", summary="s")])
    nul = [
        Episode(id="fine-2", task="fine", summary="s"),
        Episode(id="nul", task="a\x00b", summary="s", created_at=1.0),
    ]
    if is_postgres_url(episodes_at):
        with pytest.raises(InvalidInput, match="NUL character"):
            tier.add(nul)
        assert tier.count() == before and tier.get("fine") is None and tier.get("fine-2") is None
    else:
        tier.add(nul)
        assert tier.get("nul") == nul[1] and tier.count() == before + 2


def test_a_filter_never_hides_an_episode_and_k_may_exceed_the_index_s_default(episodes_at: str, embedder: Any) -> None:
    """Three rare matches far from the query among 300 episodes are all found with the filter (the pgvector tier
    searches exactly when the index's rows, filtered after the scan, are fewer than k), and k = 100 gives 100."""
    tier = open_episodic(episodes_at, embedder, namespace="f")
    eps = [Episode(id=f"c{i}", task=f"current ratio of company {i}", summary="", outcome="failure") for i in range(297)]
    eps += [Episode(id=f"s{i}", task=f"weather in town {i}", summary="", outcome="success") for i in range(3)]
    tier.add(eps)
    hits = tier.search("current ratio of company 7", 5, outcome="success")
    assert sorted(h.episode.id for h in hits) == ["s0", "s1", "s2"]
    assert len(tier.search("current ratio", 100)) == 100
    assert tier.search("current ratio", 5, playbook="no such playbook") == []


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("chroma run did not start")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(params=["chroma", pytest.param("pgvector", marks=pytest.mark.postgres)])
def episodes_server(request: pytest.FixtureRequest) -> str:
    """A server several processes share: `chroma run` on 127.0.0.1, or PostgreSQL with pgvector."""
    url: str = request.getfixturevalue("chroma_server" if request.param == "chroma" else "pgvector_url")
    return url


def test_several_writer_processes_on_a_server_lose_nothing(tmp_path: Path, episodes_server: str, embedder: Any) -> None:
    writers, per_writer = 4, 25
    start = tmp_path / "go"
    worker = [sys.executable, "-m", "tests.memory_worker", episodes_server, "shared"]
    procs = [
        subprocess.Popen(
            [*worker, str(w), str(per_writer), str(start)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    # every writer has loaded its embedder and reached the server: release them together
    deadline = time.monotonic() + 120
    while sum((tmp_path / f"ready-{w}").exists() for w in range(writers)) < writers:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not get ready"
        time.sleep(0.02)
    start.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    store = open_episodic(episodes_server, embedder, namespace="shared")
    assert store.count() == writers * per_writer
    for w in range(writers):
        for i in range(0, per_writer, 6):
            ep = store.get(f"w{w}-e{i}")
            assert ep is not None and ep.task.startswith(f"writer {w} task {i}:")
            (top,) = store.search(ep.document(), 1)
            assert top.episode.id == ep.id and top.similarity > 0.99  # the stored vector is intact
    assert open_episodic(episodes_server, embedder, namespace="other").count() == 0


# -- knowledge graph -------------------------------------------------------------------------------------------------
def test_a_contradicted_fact_is_superseded_and_kept_as_history(db_url: str) -> None:
    store = PlaybookStore(db_url)
    kg = KnowledgeGraph(store, namespace="n")
    usd = kg.add("Acme Corp", "reporting currency", "USD", valid_from=10, episode="run:9")
    eur = kg.add("acme  corp", "reporting_currency", "EUR", valid_from=20, episode="run:19")
    assert [f.object for f in kg.current("Acme Corp", "reporting_currency")] == ["EUR"]
    fresh = KnowledgeGraph(store, namespace="n")  # reloaded from the database
    hist = fresh.history("ACME CORP", "reporting_currency")
    assert [(f.object, f.valid_from, f.valid_to, f.superseded_by) for f in hist] == [
        ("USD", 10, 20, eur.id),
        ("EUR", 20, None, None),
    ]
    assert hist[0].id == usd.id and hist[0].episode == "run:9"
    assert kg.add("Acme Corp", "reporting_currency", "eur", valid_from=25).id == eur.id  # no duplicate
    late = kg.add("Acme Corp", "reporting_currency", "GBP", valid_from=15)  # learned late, already superseded
    assert (late.valid_to, late.superseded_by) == (20, eur.id)
    assert [f.object for f in KnowledgeGraph(store, namespace="n").current("acme corp", "reporting_currency")] == [
        "EUR"
    ]
    kg.add("Acme Corp", "uses", "EBITDA", valid_from=3, single=False)
    kg.add("Acme Corp", "uses", "FCF", valid_from=4, single=False)  # many-valued: both hold
    assert sorted(f.object for f in kg.current("Acme Corp", "uses")) == ["EBITDA", "FCF"]


def test_graph_queries_neighbourhood_paths_bullets_and_mentions(tmp_path: Path) -> None:
    kg = KnowledgeGraph(PlaybookStore(f"sqlite:///{tmp_path / 'kg.db'}"), namespace="n")
    kg.add("current ratio", "defined_as", "current assets / current liabilities", valid_from=1)
    kg.add("current assets", "includes", "inventory", valid_from=2, single=False)
    kg.add("inventory", "valued_by", "FIFO", valid_from=3)
    kg.add("quick ratio", "excludes", "inventory", valid_from=4, single=False)
    kg.link_bullet("current ratio", "fin", "calc-00002")
    kg.link_bullet("current ratio", "fin", "calc-00002")  # idempotent
    one = {f.text() for f in kg.neighbourhood(["Inventory"], hops=1)}
    assert one == {"current assets includes inventory", "inventory valued by FIFO", "quick ratio excludes inventory"}
    two = kg.neighbourhood(["FIFO"], hops=2)
    assert two[0].text() == "inventory valued by FIFO" and len(two) == 3
    (path,) = kg.paths("quick ratio", "FIFO")
    assert [f.relation for f in path] == ["excludes", "valued_by"]
    assert kg.paths("quick ratio", "nowhere") == []
    assert kg.bullets("Current Ratio") == [("fin", "calc-00002")]
    assert kg.mentioned("What is the current ratio if inventory is valued by FIFO?") == [
        "current ratio",
        "inventory",
        "fifo",
    ]
    with pytest.raises(ValueError):
        kg.add("x", "!!!", "y", valid_from=1)


# -- context assembly -------------------------------------------------------------------------------------------------
def test_the_fused_context_keeps_its_budget_and_puts_the_stable_part_first(
    tmp_path: Path, episodes_at: str, embedder: Any
) -> None:
    kg = KnowledgeGraph(_store_beside(episodes_at, tmp_path, "c.db"), namespace="n")
    facts = [kg.add(f"metric {i}", "defined_as", f"formula {i}", valid_from=i) for i in range(10)]
    eps = open_episodic(episodes_at, embedder, namespace="n")
    eps.add(_episodes(10))
    hits = eps.search("current ratio", 5)
    buf = ShortTermBuffer(200)
    for i in range(5):
        buf.add(i, "task", f"step {i} happened")
    full = assemble(START_PB, facts=facts, episodes=hits, recent=buf.newest_first(), budget=None)
    heads = [full.text.index(h) for h in ("PLAYBOOK:", "KNOWN FACTS:", "SIMILAR PAST EPISODES:", "RECENT STEPS")]
    assert heads == sorted(heads) and heads[0] == 0
    for budget in (30, 60, 120, 250, 500, 1000):
        ctx = assemble(START_PB, facts=facts, episodes=hits, recent=buf.newest_first(), budget=budget)
        assert approx_tokens(ctx.text) <= budget
        if budget >= 250:  # rank fusion interleaves: every tier gets its best items in
            assert set(ctx.kept) == {"playbook", "facts", "episodes", "recent"}
            assert ctx.kept["episodes"][0] == hits[0].episode.id and ctx.kept["recent"][0] == "4:task"


# -- the loop with every tier ---------------------------------------------------------------------------------------
def _responder(prompts: list[str]) -> Any:
    def respond(body: dict[str, Any]) -> str:
        system = "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
        if "You are an expert problem solver" in system:
            prompts.append(system + "\n" + body["messages"][-1]["content"])
            return json.dumps({"reasoning": "r", "bullet_ids": [], "final_answer": "2.0"})
        if "You are an expert analyst" in system:
            return json.dumps(
                {
                    "reasoning": "r",
                    "error_identification": "e",
                    "root_cause_analysis": "c",
                    "correct_approach": "divide current assets by current liabilities",
                    "key_insight": "The current ratio is current assets over current liabilities.",
                    "bullet_tags": [],
                }
            )
        if "You maintain a playbook" in system:
            return json.dumps({"reasoning": "nothing new", "operations": []})
        if "You extract facts" in system:
            return json.dumps(
                {"facts": [{"subject": "current ratio", "relation": "defined_as", "object": "assets / liabilities"}]}
            )
        raise AssertionError(system[:80])

    return respond


def test_the_loop_uses_all_three_tiers_and_a_resumed_run_has_its_buffer_back(
    tmp_path: Path, episodes_at: str, embedder: Any
) -> None:
    store = _store_beside(episodes_at, tmp_path, "loop.db")  # on pgvector: playbook, graph and episodes in one database
    store.create("fin", START_PB, namespace="agent-1")
    memory = Memory.local(store, episodes_at, namespace="agent-1", embedder=embedder, config=MemoryConfig())
    tasks = [
        Task(id="a", input="Current assets 200, current liabilities 100. What is the current ratio?", target="2"),
        Task(id="b", input="Current assets 900, current liabilities 300. What is the current ratio?", target="3"),
    ]
    prompts: list[str] = []
    with FakeOpenAIServer() as server:
        server.responder = _responder(prompts)
        llm = LLM(OpenAIProvider("fake", base_url=server.base_url, structured="prompt"), sleep=lambda _s: None)

        def ctx(n: int) -> LoopContext:
            setup = RunSetup(
                llm, store, "fin", EVALUATORS["formula"], namespace="agent-1", config=LoopConfig(max_rounds=1),
                memory=memory,
            )  # fmt: skip
            return LoopContext(setup, tasks[:n], "m1")

        first = run(ctx(1), tmp_path / "ck.db")
        second = run(ctx(2), tmp_path / "ck.db")  # the same run, resumed with one more task
    assert [r.task_id for r in second.results] == ["a", "b"] and second.resumed
    assert first.results[0].memory == [] and second.results[1].memory == []
    assert "SIMILAR PAST EPISODES" not in prompts[0] and "KNOWN FACTS" not in prompts[0]
    p = prompts[1]
    assert "PLAYBOOK:" in p and p.index("PLAYBOOK:") < p.index("KNOWN FACTS:")
    assert "current ratio defined as assets / liabilities" in p  # graph: extracted from the reflection on task a
    assert "SIMILAR PAST EPISODES" in p and "Current assets 200" in p  # episodic: task a
    assert "RECENT STEPS" in p and "step 1 task" in p  # short-term: came back from the checkpoint
    assert memory.episodic is not None
    episode = memory.episodic.get("m1:0")
    assert episode is not None and episode.outcome == "success"  # "2.0" is right for task a (target 2)
