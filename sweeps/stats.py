"""Seed-level statistics as rliable (Agarwal et al. 2021) defines them, on scipy.

A config's score is one number per seed: its :data:`FINAL_METRIC`. Across seeds we report the
interquartile mean (IQM: the mean of the middle 50 % of runs, robust to one lucky or broken seed)
with a 95 % percentile bootstrap confidence interval (resampling runs; with one task, rliable's
stratified bootstrap is exactly this), and the probability of improvement P(X > Y): the chance
that a run of one config beats a run of the other (ties count half).

Why scipy and not the ``rliable`` package: rliable 1.2.0 installs, but ``import rliable`` fails on
our stack — its bootstrap backend ``arch`` 7.2 calls pandas' ``deprecate_kwarg`` with the pandas-2
signature and pandas 3 removed it. ``scipy.stats.bootstrap`` resamples independent samples and
computes percentile intervals, which is all rliable does for one task.

>>> float(iqm([1.0, 2.0, 3.0, 100.0]))
2.5
>>> probability_of_improvement([2, 3], [1, 3])
0.625
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "CONFIDENCE",
    "ConfirmedConfig",
    "FINAL_FRACTION",
    "FINAL_METRIC",
    "Comparison",
    "Interval",
    "StatsError",
    "compare_scores",
    "final_tail_env_steps",
    "iqm",
    "iqm_interval",
    "performance_profile",
    "probability_of_improvement",
    "summarise_confirmed",
]

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
FINAL_FRACTION = 0.1
FINAL_METRIC = (
    "the mean of the sweep's metric over the iterations of a trial's last 10 % of the budget's "
    "env steps (so a late collapse counts against its config; a trial stopped early is scored "
    "on the steps before it stopped)"
)
_POWER_Z = 1.959964 + 0.841621  # two-sided 5 % test, 80 % power


class StatsError(ValueError):
    """Scores a statistic cannot be computed from (reported in one line)."""


def final_tail_env_steps(max_env_steps: int) -> int:
    """Env steps of the trial's tail that :data:`FINAL_METRIC` averages over."""
    return max(1, math.ceil(FINAL_FRACTION * max_env_steps))


def iqm(scores, axis: int = -1):
    """Interquartile mean: the mean of the middle 50 % of ``scores`` (rliable's aggregate_iqm)."""
    return stats.trim_mean(np.asarray(scores, dtype=float), proportiontocut=0.25, axis=axis)


def probability_of_improvement(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> float:
    """P(X > Y) + P(X = Y) / 2 over every pair of a run of ``x`` and a run of ``y``."""
    xs, ys = np.asarray(x, dtype=float)[:, None], np.asarray(y, dtype=float)[None, :]
    return float(np.mean(xs > ys) + 0.5 * np.mean(xs == ys))


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval, from ``n`` runs (per side)."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:,.1f} [{self.low:,.1f}, {self.high:,.1f}]"

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def _checked(scores: Sequence[float] | np.ndarray, label: str) -> np.ndarray:
    values = np.asarray([s for s in scores if s is not None], dtype=float)
    if len(values) < 2:
        raise StatsError(
            f"{label} has {len(values)} scored run(s); a confidence interval needs at least 2 "
            "seeds (python -m sweeps.confirm NAME --top K --seeds N adds them)"
        )
    if not np.all(np.isfinite(values)):
        raise StatsError(f"{label} has a score that is not a finite number")
    return values


def _bootstrap(samples: tuple[np.ndarray, ...], statistic, *, seed: int) -> tuple[float, float]:
    if all(np.ptp(s) == 0 for s in samples):  # nothing to resample: the interval is the point
        point = float(statistic(*samples, axis=-1))
        return point, point
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def iqm_interval(
    scores: Sequence[float] | np.ndarray, *, label: str = "this config", seed: int = 0
) -> Interval:
    """IQM of ``scores`` (one per seed) with its 95 % percentile bootstrap interval."""
    values = _checked(scores, label)
    low, high = _bootstrap((values,), iqm, seed=seed)
    return Interval(float(iqm(values)), low, high, len(values))


def _iqm_difference(x, y, axis=-1):
    return iqm(x, axis=axis) - iqm(y, axis=axis)


@dataclass(frozen=True)
class Comparison:
    """A against B: each side's IQM, the difference A - B, P(A > B) and a verdict."""

    a_label: str
    b_label: str
    a: Interval
    b: Interval
    difference: Interval
    probability_of_improvement: float
    verdict: str


def seeds_needed(a: np.ndarray, b: np.ndarray) -> int | None:
    """Seeds per side a two-sample test would need to detect the observed difference of means
    (5 % two-sided, 80 % power); None where the runs do not differ at all."""
    diff = abs(float(np.mean(a) - np.mean(b)))
    spread = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    if diff == 0 or spread == 0:
        return None
    return math.ceil(2 * (_POWER_Z * spread / diff) ** 2)


def compare_scores(
    a_scores: Sequence[float],
    b_scores: Sequence[float],
    *,
    a_label: str = "A",
    b_label: str = "B",
    mode: str = "max",
    seed: int = 0,
) -> Comparison:
    """Compare two configs' seed scores: better means higher for ``mode='max'``."""
    a, b = _checked(a_scores, a_label), _checked(b_scores, b_label)
    a_iqm, b_iqm = iqm_interval(a, seed=seed), iqm_interval(b, seed=seed + 1)
    low, high = _bootstrap((a, b), _iqm_difference, seed=seed + 2)
    difference = Interval(a_iqm.value - b_iqm.value, low, high, min(len(a), len(b)))
    sign = 1 if mode == "max" else -1
    poi = probability_of_improvement(sign * a, sign * b)
    if sign * low > 0 or sign * high < 0:
        first, second = (a_label, b_label) if sign * difference.value > 0 else (b_label, a_label)
        verdict = f"{first} better than {second} (the 95 % interval of the difference excludes 0)"
    else:
        sizes = f"{len(a)}" if len(a) == len(b) else f"{len(a)} and {len(b)}"
        needed = seeds_needed(a, b)
        verdict = f"no detectable difference at N={sizes} seeds; " + (
            f"~{needed} seeds per side would be needed to see a difference of this size"
            if needed is not None
            else "the runs scored the same"
        )
    return Comparison(a_label, b_label, a_iqm, b_iqm, difference, poi, verdict)


def performance_profile(scores: Sequence[float], thresholds: np.ndarray) -> np.ndarray:
    """The fraction of runs scoring above each threshold (rliable's performance profile)."""
    values = np.asarray(scores, dtype=float)[:, None]
    return np.mean(values > np.asarray(thresholds, dtype=float)[None, :], axis=0)


@dataclass(frozen=True)
class ConfirmedConfig:
    """One confirmed config: its seeds' final metrics and evaluation flag rates, summarised."""

    repeats: str
    params: dict[str, Any]
    trial_ids: list[str]
    seeds: list[int]
    scores: list[float]
    flag_rates: list[float]
    final: Interval | None
    """IQM of the final metric over seeds with its 95 % interval (None below 2 seeds)."""
    flag_rate: Interval | None
    probability_of_improvement: float | None
    """P(a run of the first-ranked config beats a run of this one); None for the first."""

    @property
    def n(self) -> int:
        return len(self.scores)


def _interval(values: list[float], seed: int) -> Interval | None:
    try:
        return iqm_interval(values, seed=seed)
    except StatsError:
        return None


def summarise_confirmed(runs: list[dict[str, Any]], *, mode: str) -> list[ConfirmedConfig]:
    """Confirm runs (``sweeps.queries`` rows) per config, best IQM of the final metric first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in runs:
        groups.setdefault(row["repeats"], []).append(row)
    sign = 1 if mode == "max" else -1
    summaries = []
    for repeats, rows in groups.items():
        scores = [r["final_metric"] for r in rows]
        flags = [r["flag_rate"] for r in rows if r["flag_rate"] is not None]
        summaries.append(
            ConfirmedConfig(
                repeats=repeats,
                params=rows[0]["params"] or {},
                trial_ids=[r["trial_id"] for r in rows],
                seeds=[r["seed"] for r in rows],
                scores=scores,
                flag_rates=flags,
                final=_interval(scores, seed=0),
                flag_rate=_interval(flags, seed=1) if len(flags) == len(rows) else None,
                probability_of_improvement=None,
            )
        )

    def rank(c: ConfirmedConfig) -> tuple:
        value = c.final.value if c.final else sum(c.scores) / len(c.scores)
        return (-sign * value, c.repeats)

    summaries.sort(key=rank)
    if not summaries:
        return []
    first = summaries[0]
    return [first] + [
        replace(
            c,
            probability_of_improvement=probability_of_improvement(
                [sign * s for s in first.scores], [sign * s for s in c.scores]
            ),
        )
        for c in summaries[1:]
    ]
