"""The statistics of gated promotion, pure (no I/O): paired tests of a candidate against the serving version on the
same tasks, the rule that decides, and the campaign that keeps a false-promotion budget over repeated looks.

- :func:`mcnemar`: the exact McNemar test on paired binary outcomes. Only the discordant tasks count: ``b`` where
  the candidate is right and serving wrong, ``c`` the other way. Under the null (the candidate no better) each
  discordant task goes either way with probability 1/2, so the one-sided p-value is ``P(X >= b)`` for
  ``X ~ Binomial(b + c, 1/2)``, computed exactly (integers, no normal approximation: lanes are small).
- :func:`paired_bootstrap`: for scores in [0, 1] (partial credit, e.g. the FiNER tags' share), the paired
  differences are resampled (a seeded generator: the same data gives the same answer). The p-value is the share of
  resampled means of the differences *centred on zero* (the null imposed) at or above the observed mean; the
  interval is the percentile interval of the uncentred means.
- :func:`decide`: promote when ``p <= alpha`` (the look's share of the campaign's budget) **and** the observed
  effect (the difference in accuracy or mean score) is at least ``min_effect``: the test says the candidate is
  better, the minimum effect that it is better by enough to matter.
- :class:`Campaign`: every trial against one serving version is a *look*, and each look is a chance to promote a
  candidate that is no better. The campaign spends its ``alpha`` over the looks so that the chance of *any* false
  promotion while serving stays put is at most ``alpha`` (the union bound: the looks' alphas sum to at most
  ``alpha``). Two schedules: ``bonferroni`` (``alpha / looks`` for each of a fixed number of looks, then the
  campaign is spent) and ``series`` (``alpha / (k (k + 1))`` for look ``k``: any number of looks, each one smaller).
  Why the union bound and not Pocock or O'Brien-Fleming boundaries: those are for one hypothesis whose data grows
  (a group-sequential trial), while here each look tests a *different* candidate (learning moved the head) on the
  same lane, so the looks are dependent in ways no boundary table knows; the union bound holds for any dependence.
  Why not alpha-investing: it earns alpha back on each rejection and bounds the expected share of false discoveries
  (mFDR), not the chance of one false promotion, which is what a team that serves the result needs. A campaign ends
  when serving moves (a promotion, a demotion, an approval): the next look tests against another version, a new
  null, with a fresh budget.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ace.errors import ConfigError

Spending = Literal["bonferroni", "series"]
Test = Literal["auto", "mcnemar", "bootstrap"]
SPENDING: tuple[Spending, ...] = ("bonferroni", "series")
TESTS: tuple[Test, ...] = ("auto", "mcnemar", "bootstrap")
BOOTSTRAP_SAMPLES = 4000
MAX_BOOTSTRAP_SAMPLES = 200_000
MAX_LOOKS = 1000


@dataclass(frozen=True, slots=True)
class Pair:
    """One lane task answered by both: the candidate's and serving's verdicts (``correct``) and scores in [0, 1]."""

    task_id: str
    candidate: bool | None
    serving: bool | None
    candidate_score: float | None = None
    serving_score: float | None = None

    @property
    def binary(self) -> bool:
        return self.candidate is not None and self.serving is not None

    def scores(self) -> tuple[float, float] | None:
        """(candidate, serving) scores: the evaluator's, else 1/0 from the verdict; None without either."""
        c = self.candidate_score if self.candidate_score is not None else _as_score(self.candidate)
        s = self.serving_score if self.serving_score is not None else _as_score(self.serving)
        return None if c is None or s is None else (c, s)


def _as_score(correct: bool | None) -> float | None:
    return None if correct is None else float(correct)


@dataclass(frozen=True, slots=True)
class PairedResult:
    """A paired test's outcome: the p-value of "the candidate is no better", the observed effect (candidate minus
    serving: accuracy or mean score), an interval for it where the test gives one, and the counts it rests on."""

    test: str
    p_value: float
    effect: float
    n: int
    interval: tuple[float, float] | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "p_value": self.p_value,
            "effect": self.effect,
            "n": self.n,
            "interval": None if self.interval is None else list(self.interval),
            "counts": dict(self.counts),
        }


def binomial_tail(k: int, n: int) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, 1/2)``, exact (a correctly rounded quotient of integers)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / (1 << n)


def mcnemar(pairs: Sequence[Pair]) -> PairedResult:
    """The exact one-sided McNemar test: is the candidate right more often than serving on the same tasks? Pairs
    without both verdicts are left out."""
    judged = [p for p in pairs if p.binary]
    b = sum(1 for p in judged if p.candidate and not p.serving)
    c = sum(1 for p in judged if p.serving and not p.candidate)
    n = len(judged)
    effect = (b - c) / n if n else 0.0
    both = sum(1 for p in judged if p.candidate and p.serving)
    counts = {"both": both, "candidate_only": b, "serving_only": c, "neither": n - both - b - c}
    return PairedResult("mcnemar", binomial_tail(b, b + c), effect, n, None, counts)


def paired_bootstrap(
    pairs: Sequence[Pair], *, alpha: float = 0.05, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> PairedResult:
    """The paired bootstrap on scores: the p-value of "the mean difference is at most 0" (the differences centred
    on zero, resampled), and the one-sided ``1 - alpha`` percentile bound (the interval's lower end; its upper end
    the ``1 - alpha`` upper bound). Pairs without both scores are left out."""
    if samples < 100:
        raise ConfigError(f"a bootstrap takes at least 100 samples, not {samples}")
    diffs = [s[0] - s[1] for p in pairs if (s := p.scores()) is not None]
    n = len(diffs)
    if n == 0:
        return PairedResult("bootstrap", 1.0, 0.0, 0, None, {"samples": samples})
    mean = math.fsum(diffs) / n
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(diffs, k=n)) / n for _ in range(samples))
    # the differences centred on zero (the null imposed) have resampled means ``m - mean``: at least ``mean`` when
    # ``m >= 2 mean``
    at_least = len(means) - bisect.bisect_left(means, 2 * mean - 1e-12)
    lo = means[max(0, math.floor(alpha * samples) - 1)]
    hi = means[min(samples - 1, math.ceil((1 - alpha) * samples) - 1)]
    p = 1.0 if all(d == 0 for d in diffs) else (1 + at_least) / (1 + samples)  # no difference: nothing to resample
    return PairedResult("bootstrap", p, mean, n, (lo, hi), {"samples": samples})


def choose_test(pairs: Sequence[Pair], test: Test = "auto") -> Literal["mcnemar", "bootstrap"]:
    """``auto``: McNemar when every answered pair has two verdicts and no partial score, else the bootstrap."""
    if test != "auto":
        return test
    partial = any((s is not None and s not in (0.0, 1.0)) for p in pairs for s in (p.candidate_score, p.serving_score))
    return "mcnemar" if not partial and all(p.binary for p in pairs) else "bootstrap"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the gate decided on one look: ``better`` (promote) or not, why, and the numbers."""

    better: bool
    reason: str
    alpha: float
    min_effect: float
    result: PairedResult

    def to_dict(self) -> dict[str, Any]:
        return {"better": self.better, "reason": self.reason, "alpha": self.alpha, "min_effect": self.min_effect,
                **self.result.to_dict()}  # fmt: skip


def decide(
    pairs: Sequence[Pair], *, alpha: float, min_effect: float = 0.0, test: Test = "auto", seed: int = 0
) -> Decision:
    """Test the candidate against serving on ``pairs`` at level ``alpha`` (this look's share of the campaign) and
    decide: better when the p-value is at most ``alpha`` and the effect at least ``min_effect``."""
    check_alpha(alpha, "alpha")
    if not (math.isfinite(min_effect) and 0.0 <= min_effect <= 1.0):
        raise ConfigError(f"the minimum effect is a difference in accuracy from 0 to 1, not {min_effect!r}")
    kind = choose_test(pairs, test)
    # the bootstrap's smallest p-value is 1 / (samples + 1): enough samples that a small look's alpha can be reached
    samples = min(MAX_BOOTSTRAP_SAMPLES, max(BOOTSTRAP_SAMPLES, math.ceil(20 / alpha)))
    result = mcnemar(pairs) if kind == "mcnemar" else paired_bootstrap(pairs, alpha=alpha, samples=samples, seed=seed)
    if result.n == 0:
        return Decision(False, "no task was answered by both", alpha, min_effect, result)
    if result.p_value > alpha:
        why = f"not significant: p={result.p_value:.4g} > alpha={alpha:.4g} (effect {result.effect:+.3f})"
        return Decision(False, why, alpha, min_effect, result)
    if result.effect < min_effect or result.effect <= 0:
        why = f"effect {result.effect:+.3f} below the minimum {min_effect:.3f} (p={result.p_value:.4g})"
        return Decision(False, why, alpha, min_effect, result)
    why = f"better: p={result.p_value:.4g} <= alpha={alpha:.4g}, effect {result.effect:+.3f} >= {min_effect:.3f}"
    return Decision(True, why, alpha, min_effect, result)


def check_alpha(alpha: object, what: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0.0 < alpha < 1.0):
        raise ConfigError(f"{what} is a probability strictly between 0 and 1, not {alpha!r}")
    return float(alpha)


class CampaignSpent(ConfigError):
    """The campaign has no alpha left for another look against this serving version."""


@dataclass
class Campaign:
    """A false-promotion budget spent over the looks against one serving version (see the module doc). ``spent``
    holds each look's alpha, in order; ``promoted`` the version a look promoted (the campaign then ends)."""

    alpha: float = 0.05
    spending: Spending = "bonferroni"
    looks: int = 10  # bonferroni: the number of looks the budget is split over (series: unbounded)
    serving: int | None = None  # the serving version the looks test against
    number: int = 1  # campaigns of this playbook, counted
    spent: list[float] = field(default_factory=list)
    promoted: int | None = None

    def __post_init__(self) -> None:
        check_alpha(self.alpha, "the campaign's alpha")
        if self.spending not in SPENDING:
            raise ConfigError(f"alpha spending is one of {', '.join(SPENDING)}, not {self.spending!r}")
        if isinstance(self.looks, bool) or not isinstance(self.looks, int) or not 1 <= self.looks <= MAX_LOOKS:
            raise ConfigError(f"a campaign has from 1 to {MAX_LOOKS} looks, not {self.looks!r}")

    def alpha_of(self, look: int) -> float:
        """The alpha of look ``look`` (1-based), 0 past the budget."""
        if self.spending == "bonferroni":
            return self.alpha / self.looks if look <= self.looks else 0.0
        return self.alpha / (look * (look + 1))

    @property
    def total_spent(self) -> float:
        return math.fsum(self.spent)

    @property
    def exhausted(self) -> str | None:
        """Why no look is left, or None."""
        if self.promoted is not None:
            return f"this campaign promoted v{self.promoted}; the next look starts a campaign against it"
        if self.spending == "bonferroni" and len(self.spent) >= self.looks:
            return (f"all {self.looks} looks of the campaign against v{self.serving} are spent "
                    f"(alpha {self.alpha:g} in all); a new campaign starts when serving moves")  # fmt: skip
        return None

    def look(self) -> tuple[int, float]:
        """Spend the next look: ``(its number, its alpha)``; :class:`CampaignSpent` when none is left."""
        if why := self.exhausted:
            raise CampaignSpent(why)
        k = len(self.spent) + 1
        a = self.alpha_of(k)
        self.spent.append(a)
        return k, a

    def against(self, serving: int) -> Campaign:
        """This campaign if it tests against ``serving`` and has not promoted, else a fresh one against it (the same
        settings, the next number)."""
        if self.serving == serving and self.promoted is None:
            return self
        if self.serving is None and not self.spent:
            self.serving = serving
            return self
        return Campaign(self.alpha, self.spending, self.looks, serving, self.number + 1)

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "spending": self.spending, "looks": self.looks, "serving": self.serving,
                "number": self.number, "spent": list(self.spent), "spent_total": self.total_spent,
                "promoted": self.promoted}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> Campaign:
        """A campaign from :meth:`to_dict`'s JSON; anything else is a :class:`ConfigError` naming what is wrong."""
        if not isinstance(data, dict):
            raise ConfigError(f"a campaign is a JSON object, not {type(data).__name__}")
        spent = data.get("spent", [])
        if not isinstance(spent, list) or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and 0 <= a < 1 for a in spent
        ):
            raise ConfigError("a campaign's 'spent' is a list of alphas")
        number, serving, promoted = data.get("number", 1), data.get("serving"), data.get("promoted")
        for what, value in (("number", number), ("serving", serving), ("promoted", promoted)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"a campaign's {what!r} is a whole number, not {value!r}")
        return cls(data.get("alpha", 0.05), data.get("spending", "bonferroni"), data.get("looks", 10), serving,
                   number or 1, [float(a) for a in spent], promoted)  # fmt: skip


__all__ = [
    "BOOTSTRAP_SAMPLES",
    "SPENDING",
    "TESTS",
    "Campaign",
    "CampaignSpent",
    "Decision",
    "Pair",
    "PairedResult",
    "Spending",
    "Test",
    "binomial_tail",
    "choose_test",
    "decide",
    "mcnemar",
    "paired_bootstrap",
]
