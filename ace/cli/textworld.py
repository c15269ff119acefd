"""``ace textworld make|play|export``: TextWorld cooking games (the textworld extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ace.cli.options import DbOpt, LoopOptions, NsOpt, loop_options
from ace.cli.output import AceTyper, open_store, out, print_step
from ace.config import LoopConfig
from ace.names import check_name
from ace.runs.workspace import data_dir, runs_dir
from ace.store import DEFAULT_NAMESPACE

app = AceTyper(
    help="TextWorld cooking games (the textworld extra): generate, play with the ACE loop, export logs.",
    no_args_is_help=True,
)
SeedsOpt = Annotated[str, typer.Option("--seeds", help="Game seeds: '1-5' or '1,4,9'.")]
GoOpt = Annotated[int, typer.Option("--go", help="Rooms: 1, 6, 9 or 12.")]
RecipeOpt = Annotated[int, typer.Option(min=1, max=5, help="Ingredients in the recipe (tw-cooking: 1-5).")]
TakeOpt = Annotated[int, typer.Option(min=0, max=5, help="Ingredients to find.")]
GamesDirOpt = Annotated[Path | None, typer.Option("--dir", help="Where games are (made) (default: the data dir).")]


MAX_SEEDS = 10_000  # games per command: a range like 1-99999999999 is a typo, not a plan


def _seeds(spec: str) -> list[int]:
    seeds: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise typer.BadParameter(f"seeds must look like '1-5' or '1,4,9', not {spec!r}") from None
        if last - first + 1 + len(seeds) > MAX_SEEDS:
            raise typer.BadParameter(f"at most {MAX_SEEDS} seeds, not {spec!r}")
        seeds += range(first, last + 1)
    return seeds


def _games(seeds: str, recipe: int, take: int, go: int, games_dir: Path | None) -> list[Path]:
    from ace.envs.textworld import CookingSettings, generate

    if go not in (1, 6, 9, 12):
        raise typer.BadParameter("--go must be 1, 6, 9 or 12")
    settings = CookingSettings(recipe=recipe, take=min(take, recipe), go=go)  # type: ignore[arg-type]
    return generate(games_dir or data_dir() / "textworld", _seeds(seeds), settings)


@app.command("make")
def tw_make(
    seeds: SeedsOpt = "1-5",
    recipe: RecipeOpt = 1,
    take: TakeOpt = 1,
    go: GoOpt = 1,
    games_dir: GamesDirOpt = None,
) -> None:
    """Generate tw-cooking games with fixed seeds (reused when already there)."""
    from ace.envs.textworld import Game

    for path in _games(seeds, recipe, take, go, games_dir):
        with Game(path) as g:
            g.reset()
            out.print(f"{path}  ({len(g.walkthrough)}-step walkthrough, {g.max_score} points)")


@app.command("play")
@loop_options("learn", "max_rounds", "playbook_budget", "curation", "layout", base=LoopConfig(max_rounds=1))
def tw_play(
    seeds: SeedsOpt = "1-5",
    recipe: RecipeOpt = 1,
    take: TakeOpt = 1,
    go: GoOpt = 1,
    games_dir: GamesDirOpt = None,
    playbook: Annotated[str, typer.Option("--playbook", "-p", help="Playbook the agent uses and learns into.")] = (
        "textworld"
    ),
    provider: Annotated[str, typer.Option(help="'local', 'anthropic:MODEL', 'openai:MODEL[@URL]'.")] = "local",
    max_moves: Annotated[
        int, typer.Option(min=1, max=100_000, help="Moves per game before it counts as unfinished.")
    ] = 30,
    run_id: Annotated[str | None, typer.Option(help="Resume this run (default: a new one).")] = None,
    db: DbOpt = None,
    namespace: NsOpt = DEFAULT_NAMESPACE,
    *,
    loop: LoopOptions,
) -> None:
    """Play games with the ACE loop as the agent, learning from each game before the next."""
    import time

    from ace.envs.textworld import play_series
    from ace.llm import LLM, Sampling
    from ace.runs.factory import RunFiles

    config = loop.config()  # --no-learn: the playbook stays fixed (a baseline)
    rid = check_name(run_id or time.strftime("textworld-%Y%m%d-%H%M%S"), "run id")
    check_name(playbook, "playbook name")
    games = _games(seeds, recipe, take, go, games_dir)
    store = open_store(db)
    llm = LLM(provider, sampling=Sampling(max_tokens=256))
    mode = "learning" if config.learn else "fixed playbook"
    out.rule(f"{len(games)} games · run {rid} · provider {provider} · {mode}")

    res = play_series(
        games, llm, store, playbook, run_id=rid, workdir=runs_dir(), namespace=namespace, max_moves=max_moves,
        config=config, on_step=lambda r: print_step(r, feedback=True),
    )  # fmt: skip
    scores = [g.score for g in res.games if g.score is not None]
    mean = sum(scores) / len(scores) if scores else 0.0
    out.print(
        f"won {res.won} of {len(res.games)} games; mean score {mean:.0%}; {playbook} at "
        f"v{store.head(playbook, namespace=namespace).version}; {llm.ledger.usage.total_tokens} tokens; "
        f"trajectory {RunFiles(runs_dir(), rid).trajectory}",
    )


@app.command("export")
def tw_export(
    output: Annotated[Path, typer.Option("--out", "-o", help="The log file to write (JSONL).")],
    seeds: SeedsOpt = "1-5",
    recipe: RecipeOpt = 1,
    take: TakeOpt = 1,
    go: GoOpt = 1,
    games_dir: GamesDirOpt = None,
    perturbed: Annotated[int, typer.Option(min=0, max=1000, help="Failing perturbed runs per game.")] = 1,
    gold_only: Annotated[bool, typer.Option("--gold-only", help="Only the walkthroughs.")] = False,
) -> None:
    """Export the games' gold walkthroughs and perturbed failing runs as chat logs (for ace learn)."""
    from ace.envs.textworld import export_logs

    games = _games(seeds, recipe, take, go, games_dir)
    counts = export_logs(games, output, perturbed=0 if gold_only else perturbed)
    out.print(f"wrote {output}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())))
