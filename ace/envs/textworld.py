"""TextWorld cooking games as an ACE environment: generated locally with fixed seeds, played by the ACE loop.

Needs the ``textworld`` extra (``pip install -e ".[textworld]"``; TextWorld 1.7.0, which works offline).

- :func:`generate` makes ``tw-cooking`` games with ``tw-make`` (one per seed, cached by settings and seed: the same
  seed and settings give the same game), :func:`as_tasks` turns them into loop tasks.
- :class:`Game` is one play-through: ``reset``, ``step(command)``, the score, won / lost, the admissible commands.
- :class:`TextWorldPlayer` is the loop's generator for these tasks: an LLM that plays the game turn by turn with the
  playbook in its prompt, choosing each command among the admissible ones (a schema enum: a grammar-constrained
  model cannot emit an impossible command) and citing the bullets it follows. Its answer is the command sequence;
  its reasoning the transcript the reflector reads.
- :class:`TextWorldEvaluator` scores an answer by playing its commands in a fresh copy of the game (games are
  deterministic): success when the game is won, score = points / max points, and a message with how it ended.
- :func:`gold_log` / :func:`perturbed_log` export a game's walkthrough (a win) and perturbed runs of it (a step
  dropped, swapped or replaced, each played for real and kept only if it fails) as OpenAI-style chat logs with tool
  calls, the format :mod:`ace.runs.from_logs` learns from (``ace learn``): the gold runs replay into a playbook.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from ace.config import UNSET, legacy_config
from ace.errors import AceError, InputFileError, UsageError
from ace.llm import LLM, Message
from ace.loop import LoopConfig, RunResult, StepRecord
from ace.loop.registry import register_evaluator, register_generator
from ace.loop.roles import GeneratorOutput
from ace.playbook import Playbook, render
from ace.runs.factory import RunSetup, start
from ace.store import PlaybookStore
from ace.tasks import Feedback, Task

try:
    import textworld
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError('the TextWorld adapter needs the textworld extra: pip install -e ".[textworld]"') from e

# jericho (under textworld) warns on every start that generated games are not in its catalogue of known games
warnings.filterwarnings("ignore", message="Unable to (retrieve walkthrough|find valid actions)", module="jericho")


# -- games ----------------------------------------------------------------------------------------------------------
class TextWorldError(AceError):
    """tw-make failed or is missing, or a game file is not there."""


@dataclass(frozen=True)
class CookingSettings:
    """``tw-make tw-cooking`` settings: ingredients in the recipe, to find, rooms, and which preparations occur."""

    recipe: int = 1
    take: int = 1
    go: Literal[1, 6, 9, 12] = 1
    open: bool = False
    cook: bool = False
    cut: bool = False
    split: Literal["train", "valid", "test"] = "train"

    @property
    def slug(self) -> str:
        flags = "".join(f"-{f}" for f in ("open", "cook", "cut") if getattr(self, f))
        return f"r{self.recipe}t{self.take}g{self.go}{flags}-{self.split}"

    def args(self) -> list[str]:
        args = ["--recipe", str(self.recipe), "--take", str(self.take), "--go", str(self.go), "--split", self.split]
        return args + [f"--{f}" for f in ("open", "cook", "cut") if getattr(self, f)]


def _tw_make() -> str:
    beside = Path(sys.executable).parent / "tw-make"  # the virtualenv's script, before anything on PATH
    found = str(beside) if beside.exists() else shutil.which("tw-make")
    if not found:
        raise TextWorldError("tw-make is not installed (the textworld extra: pip install -e '.[textworld]')")
    return found


def generate(out_dir: str | Path, seeds: Iterable[int], settings: CookingSettings | None = None) -> list[Path]:
    """One ``tw-cooking`` game per seed under ``out_dir`` (``tw-cooking-<settings>-s<seed>.z8``); a game already
    there is reused. About 5-8 s per new game."""
    settings = settings or CookingSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = out / f"tw-cooking-{settings.slug}-s{seed}.z8"
        if not (path.exists() and path.with_suffix(".json").exists()):
            cmd = [_tw_make(), "tw-cooking", *settings.args(), "--seed", str(seed), "--output", str(path), "-f"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if done.returncode != 0 or not path.exists():
                raise TextWorldError(f"tw-make failed for seed {seed}: {(done.stderr or done.stdout)[-500:]}")
        paths.append(path)
    return paths


_PROMPT_LINE = re.compile(r"^\s*>.*$", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z]{3}")


def clean(text: str) -> str:
    """A game's output without the ASCII-art banner (lines without a word), the trailing prompt and status line,
    and blank runs."""
    lines = [line.strip() for line in _PROMPT_LINE.sub("", text).splitlines()]
    return "\n".join(line for line in lines if _WORD.search(line))


@dataclass
class Step:
    command: str
    observation: str
    score: int
    done: bool


class Game:
    """One play-through of a game file. Use as a context manager (it holds an interpreter process)."""

    INFOS = textworld.EnvInfos(
        admissible_commands=True, max_score=True, won=True, lost=True, objective=True, extras=["walkthrough"]
    )

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TextWorldError(f"no game file {self.path} (make it again: ace textworld make --seeds ...)")
        self._env = textworld.start(str(self.path), request_infos=self.INFOS)
        self._state: Any = None
        self.steps: list[Step] = []

    def __enter__(self) -> Game:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._env.close()

    def reset(self) -> str:
        self._state = self._env.reset()
        self.steps = []
        return clean(self._state.feedback)

    def step(self, command: str) -> Step:
        if self._state is None:
            self.reset()
        if self.done:
            raise UsageError(f"{self.path.name}: the game is over")
        self._state, score, done = self._env.step(command)
        step = Step(command, clean(self._state.feedback), int(score), bool(done))
        self.steps.append(step)
        return step

    @property
    def objective(self) -> str:
        return str(self._state.objective)

    @property
    def walkthrough(self) -> list[str]:
        return list(self._state["extra.walkthrough"])

    @property
    def admissible(self) -> list[str]:
        return sorted(self._state.admissible_commands or [])

    @property
    def score(self) -> int:
        return int(self._state.score)

    @property
    def max_score(self) -> int:
        return int(self._state.max_score)

    @property
    def won(self) -> bool:
        return bool(self._state.won)

    @property
    def lost(self) -> bool:
        return bool(self._state.lost)

    @property
    def done(self) -> bool:
        return self.won or self.lost


def as_tasks(paths: Iterable[str | Path]) -> list[Task]:
    """Loop tasks for game files: the objective and the opening as input, the game file in metadata."""
    tasks = []
    for p in paths:
        with Game(p) as game:
            opening = game.reset()
            tasks.append(
                Task(
                    id=Path(p).stem,
                    input=opening if game.objective in opening else f"{game.objective}\n\n{opening}",
                    metadata={"kind": "textworld", "game": str(Path(p).resolve())},
                )
            )
    return tasks


# -- scoring ------------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    won: bool
    lost: bool
    score: int
    max_score: int
    moves: int
    steps: list[Step] = field(default_factory=list)

    @property
    def message(self) -> str:
        tally = f"score {self.score}/{self.max_score}"
        if self.won:
            return f"won in {self.moves} moves ({tally})"
        last = self.steps[-1].observation.replace("\n", " ")[:200] if self.steps else ""
        if self.lost:
            return f"lost at move {self.moves} ('{self.steps[-1].command}': {last}) ({tally})"
        return f"not finished after {self.moves} moves ({tally}); last: {last}"


def play_commands(path: str | Path, commands: Iterable[str], *, max_moves: int | None = None) -> Outcome:
    """Play ``commands`` in a fresh copy of the game until it ends or they run out."""
    with Game(path) as game:
        game.reset()
        for command in commands:
            if game.done or (max_moves is not None and len(game.steps) >= max_moves):
                break
            game.step(command)
        return Outcome(game.won, game.lost, game.score, game.max_score, len(game.steps), list(game.steps))


def commands_of(answer: str) -> list[str]:
    """The command sequence in a player's answer: one command per line."""
    return [c.strip() for c in answer.splitlines() if c.strip()]


class TextWorldEvaluator:
    """Scores a command sequence by playing it (see the module doc)."""

    def __init__(self, max_moves: int | None = None) -> None:
        self.max_moves = max_moves
        self.spec = {"name": "textworld", "max_moves": max_moves}

    def __call__(self, task: Task, answer: str) -> Feedback:
        game = task.metadata.get("game")
        if not game:
            raise InputFileError(f"task {task.id} has no game file (metadata 'game')")
        o = play_commands(game, commands_of(answer), max_moves=self.max_moves)
        return Feedback(correct=o.won, score=o.score / o.max_score if o.max_score else 0.0, message=o.message)


# -- the player -----------------------------------------------------------------------------------------------------
PLAYER_PROMPT = (
    "You play a text adventure. Reach the goal in as few moves as possible. Each turn choose exactly one of the "
    "admissible commands. The playbook holds lessons from earlier games, each with an id like [str-00001]; cite in "
    "bullet_ids the ones your choice follows (an empty list is fine)."
)


class TurnChoice(BaseModel):
    command: str
    bullet_ids: list[str] = Field(default_factory=list)


@lru_cache(maxsize=256)
def _turn_model(commands: tuple[str, ...], ids: tuple[str, ...]) -> type[TurnChoice]:
    ids_t: Any = list[Literal[ids]] if ids else list[str]  # type: ignore[valid-type]
    return create_model(
        "TurnChoice",
        __base__=TurnChoice,
        command=(Literal[commands], ...),  # type: ignore[arg-type]
        bullet_ids=(ids_t, Field(default_factory=list, max_length=3 if ids else 0)),
    )


class TextWorldPlayer:
    """The loop's generator for TextWorld tasks: ``player(task, playbook, hint) -> GeneratorOutput``; its
    ``spec`` rebuilds it by name (:func:`register`)."""

    def __init__(
        self,
        llm: LLM,
        *,
        max_moves: int = 30,
        history: int = 4,
        playbook_budget: int = 400,
        observation_chars: int = 600,
    ) -> None:
        self.llm, self.max_moves, self.history = llm, max_moves, history
        self.playbook_budget, self.observation_chars = playbook_budget, observation_chars
        self.spec = {
            "name": "textworld",
            "max_moves": max_moves,
            "history": history,
            "playbook_budget": playbook_budget,
            "observation_chars": observation_chars,
        }

    def choose(self, game: Game, playbook: Playbook, observation: str, hint: str | None) -> TurnChoice:
        recent = game.steps[-self.history :]
        past = "\n".join(f"> {s.command}\n{s.observation[:200]}" for s in recent) or "(none yet)"
        parts = [
            f"GOAL: {game.objective}",
            f"LAST MOVES:\n{past}",
            f"NOW (move {len(game.steps) + 1}, score {game.score}/{game.max_score}):\n"
            f"{observation[: self.observation_chars]}",
            "ADMISSIBLE COMMANDS:\n" + "\n".join(game.admissible),
        ]
        if hint:
            parts.insert(1, f"A PREVIOUS ATTEMPT FAILED. What was learned:\n{hint}")
        text = render(playbook, budget=self.playbook_budget)
        messages = [
            Message("system", PLAYER_PROMPT, cache=True),
            Message("system", f"PLAYBOOK:\n{text}" if text else "PLAYBOOK: (empty)", cache=True),
            Message("user", "\n\n".join(parts)),
        ]
        model = _turn_model(tuple(game.admissible) or ("look",), tuple(b.id for b in playbook))
        return self.llm.call(messages, output=model, role="player").parsed  # type: ignore[return-value]

    def __call__(self, task: Task, playbook: Playbook, hint: str | None) -> GeneratorOutput:
        cited: dict[str, None] = {}
        lines = []
        with Game(task.metadata["game"]) as game:
            observation = game.reset()
            while not game.done and len(game.steps) < self.max_moves:
                choice = self.choose(game, playbook, observation, hint)
                cited.update(dict.fromkeys(i for i in choice.bullet_ids if i in playbook))
                step = game.step(choice.command)
                observation = step.observation
                cites = f" [{', '.join(choice.bullet_ids)}]" if choice.bullet_ids else ""
                lines.append(f"> {step.command}{cites}\n{observation[:300]}")
            end = "won" if game.won else "lost" if game.lost else f"stopped after {self.max_moves} moves"
            lines.append(f"({end}; score {game.score}/{game.max_score})")
            commands = [s.command for s in game.steps]
        return GeneratorOutput(reasoning="\n".join(lines), bullet_ids=list(cited), final_answer="\n".join(commands))


# -- the ACE loop across a series of games ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GameResult:
    id: str
    won: bool | None
    score: float | None  # share of the game's points
    outcome: str | None  # how it ended
    version: int  # the playbook's version after the game
    error: str | None


@dataclass
class SeriesResult:
    run: RunResult
    games: list[GameResult]

    @property
    def won(self) -> int:
        return sum(bool(g.won) for g in self.games)


def play_series(
    games: Sequence[str | Path],
    llm: LLM,
    store: PlaybookStore,
    playbook: str,
    *,
    run_id: str,
    workdir: str | Path,
    namespace: str = "default",
    max_moves: int = 30,
    config: LoopConfig | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    learn: bool = UNSET,
    max_rounds: int = UNSET,
) -> SeriesResult:
    """The ACE loop as the agent across ``games`` in order: each game is played to its end (won, lost, or
    ``max_moves``), scored by replaying its commands, reflected on and curated into ``playbook`` (created empty if
    missing) before the next, with the loop's options ``config`` (default: one round per game).
    ``LoopConfig(learn=False)`` plays with the playbook fixed (a baseline). Resumable by ``run_id``; the trajectory
    is ``<workdir>/<run_id>.trajectory.jsonl``. ``learn`` and ``max_rounds`` are the deprecated way to pass them."""
    cfg = legacy_config(config, "play_series", LoopConfig(max_rounds=1), learn=learn, max_rounds=max_rounds)
    store.ensure(playbook, namespace=namespace, author=f"textworld {run_id}")
    setup = RunSetup(
        llm=llm,
        store=store,
        playbook=playbook,
        namespace=namespace,
        evaluator=TextWorldEvaluator(max_moves=max_moves),
        config=cfg,
        generator=TextWorldPlayer(llm, max_moves=max_moves),
        on_step=on_step,
    )
    result = start(setup, as_tasks(games), run_id=run_id, workdir=workdir)
    rows = [GameResult(r.task_id, r.correct, r.score, r.feedback, r.version, r.error) for r in result.results]
    return SeriesResult(result, rows)


# -- logs for offline learning ---------------------------------------------------------------------------------------
SYSTEM = "You play a text adventure with the act tool; each call runs one command."


def to_log(path: str | Path, commands: list[str], *, log_id: str, kind: str) -> dict[str, Any]:
    """Play ``commands`` in the game and write the episode as an OpenAI-style chat log with tool calls."""
    with Game(path) as game:
        opening = game.reset()
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{game.objective}\n\n{opening}"},
        ]
        for i, command in enumerate(commands):
            if game.done:
                break
            step = game.step(command)
            function = {"name": "act", "arguments": json.dumps({"command": command})}
            call = {"id": f"call_{i}", "type": "function", "function": function}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": step.observation})
        o = Outcome(game.won, game.lost, game.score, game.max_score, len(game.steps), list(game.steps))
    messages.append({"role": "assistant", "content": "I won." if o.won else "I could not finish."})
    return {
        "id": log_id,
        "kind": kind,
        "game": str(Path(path).name),
        "messages": messages,
        "outcome": {"success": o.won, "score": o.score / o.max_score if o.max_score else 0.0, "message": o.message},
    }


def gold_log(path: str | Path) -> dict[str, Any]:
    """The game's walkthrough, played, as a log (a win)."""
    with Game(path) as game:
        game.reset()
        walk = game.walkthrough
    return to_log(path, walk, log_id=f"{Path(path).stem}:gold", kind="gold")


def _drop(walk: list[str], rng: random.Random, _alternatives: list[str]) -> list[str]:
    """A needed step left out."""
    k = rng.randrange(len(walk))
    return walk[:k] + walk[k + 1 :]


def _swap(walk: list[str], rng: random.Random, _alternatives: list[str]) -> list[str]:
    """Two neighbouring steps in the wrong order."""
    if len(walk) < 2:
        return walk
    k = rng.randrange(len(walk) - 1)
    return [*walk[:k], walk[k + 1], walk[k], *walk[k + 2 :]]


def _replace(walk: list[str], rng: random.Random, alternatives: list[str]) -> list[str]:
    """A step replaced by a command that was admissible somewhere along the way."""
    k = rng.randrange(len(walk))
    return [*walk[:k], rng.choice(alternatives or ["look"]), *walk[k + 1 :]]


PERTURBATIONS: dict[str, Callable[[list[str], random.Random, list[str]], list[str]]] = {
    "drop": _drop,
    "swap": _swap,
    "replace": _replace,
}


def perturbed_log(path: str | Path, seed: int, *, tries: int = 12) -> dict[str, Any] | None:
    """A failing run of the game: its walkthrough perturbed (seeded), played for real; None if every try won."""
    rng = random.Random(seed)
    with Game(path) as game:
        game.reset()
        walk, alternatives = game.walkthrough, [c for c in game.admissible if c not in game.walkthrough]
        # commands admissible somewhere along the walkthrough, so a replacement is plausible
        for c in walk:
            if game.done:
                break
            game.step(c)
            alternatives += [a for a in game.admissible if a not in walk and a not in alternatives]
    for attempt in range(tries):
        kind = rng.choice(sorted(PERTURBATIONS))
        commands = PERTURBATIONS[kind](walk, rng, alternatives)
        log = to_log(path, commands, log_id=f"{Path(path).stem}:{kind}-{seed}-{attempt}", kind=kind)
        if not log["outcome"]["success"]:
            return log
    return None


def export_logs(paths: Iterable[str | Path], out: str | Path, *, perturbed: int = 1, seed: int = 0) -> dict[str, int]:
    """Write each game's gold log and ``perturbed`` failing logs to ``out`` (JSONL); returns the counts by kind."""
    counts: dict[str, int] = {}
    with Path(out).open("w", encoding="utf-8") as f:
        for n, path in enumerate(paths):
            logs = [gold_log(path)]
            for k in range(perturbed):
                if (log := perturbed_log(path, seed * 1000 + n * 10 + k)) is not None:
                    logs.append(log)
            for log in logs:
                f.write(json.dumps(log, ensure_ascii=False) + "\n")
                counts[log["kind"]] = counts.get(log["kind"], 0) + 1
    return counts


__all__ = [
    "CookingSettings",
    "Game",
    "GameResult",
    "Outcome",
    "SeriesResult",
    "Step",
    "TextWorldError",
    "TextWorldEvaluator",
    "TextWorldPlayer",
    "as_tasks",
    "clean",
    "commands_of",
    "export_logs",
    "generate",
    "gold_log",
    "perturbed_log",
    "play_commands",
    "play_series",
    "to_log",
]


def register() -> None:
    """Make the ``textworld`` evaluator and player rebuildable by name (an ``ace.plugins`` entry point)."""
    register_evaluator("textworld", TextWorldEvaluator)
    register_generator("textworld", TextWorldPlayer)


register()
