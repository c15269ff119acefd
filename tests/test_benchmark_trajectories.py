"""The README's learning figures come from trajectories anyone can replay (#29 item 7): each file listed in
``benchmarks/trajectories/figures.json`` re-executes from its own recorded responses (no model: every version hash
must come out the same), and the figures it reproduces are the ones the manifest names and the README prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ace.llm import LLM
from ace.runs.reexecute import RecordedProvider, rerun
from ace.runs.trajectory import read
from ace.store import PlaybookStore
from ace.tasks import share_of

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks" / "trajectories"
MANIFEST = json.loads((HERE / "figures.json").read_text(encoding="utf-8")) if (HERE / "figures.json").exists() else {}


def test_every_trajectory_in_the_benchmarks_is_listed_with_its_figures() -> None:
    files = sorted(p.name for p in HERE.glob("*.trajectory.jsonl"))
    assert files, "benchmarks/trajectories holds the README's recorded runs"
    assert sorted(MANIFEST) == files


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_a_benchmark_trajectory_reproduces_its_readme_figures(name: str, tmp_path: Path) -> None:
    figures: dict[str, Any] = MANIFEST[name]
    path = tmp_path / name  # re-executed from a copy: its replay directory goes beside the copy, not the repository
    path.write_bytes((HERE / name).read_bytes())
    header, _ = read(path)
    store = PlaybookStore(f"sqlite:///{tmp_path / 'replay.db'}")
    report = rerun(path, LLM(RecordedProvider(path)), store, workdir=tmp_path / "work")
    assert report.reproduced == len(report.steps) == figures["tasks"], report.notes
    live = [s.live_correct for s in report.steps]
    mid = len(live) // 2
    got = {
        "accuracy": share_of(live),
        "first_half": share_of(live[:mid]),
        "second_half": share_of(live[mid:]),
    }
    for key, value in got.items():
        assert value == pytest.approx(figures[key], abs=0.005), key
    namespace = str(header.get("namespace") or "default")
    playbooks = {p.name: p for p in store.list()}
    assert report.playbook in playbooks, (report.playbook, list(playbooks))
    pb = store.load(report.playbook, namespace=playbooks[report.playbook].namespace)
    assert len(pb) == figures["bullets"], namespace
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert figures["readme"] in " ".join(readme.split()), f"the README no longer prints {figures['readme']!r}"
    store.close()
