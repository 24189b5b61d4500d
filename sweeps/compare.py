"""A/B comparison of configs over seeds: is A really better than B?

    python -m sweeps.compare A B [C ...] [--db-url URL]

Each side is a sweep name or ``NAME:TRIAL``:

- ``NAME:TRIAL`` is the config of search trial TRIAL, scored by its confirm runs (the search run
  itself is left out: it was picked for scoring well, so it is biased upward);
- ``NAME`` is the sweep's best confirmed config if it has a confirm stage; else every finished
  trial of the sweep, one run each — right for a sweep whose only searched value is the seed
  (``sweeps/dqn_vs_ppo.py``).

A run's score is its final metric (:data:`sweeps.stats.FINAL_METRIC`). For each side the IQM with
its 95 % bootstrap interval of the final metric, the greedy evaluation's flag rate and the env
steps to the first training flag (what "did imitation help?" asks of ``sweeps/bc_ppo.py`` against
a pure-RL sweep of the same budget), then for the first side against each other: the difference of
final-metric IQMs with its interval, P(A > B), and a one-line verdict.
"""

import sys
from dataclasses import dataclass

from algos import CheckpointError
from callbacks.store import StoreError, embedded_db_url
from sweeps.cli import OneLineParser, SweepError, add_db_url_flag, db_url_of
from sweeps.confirm import ConfirmError, confirmed_configs
from sweeps.leaderboard import interval_text
from sweeps.options import parse_options
from sweeps.queries import ReportError, finished_runs, is_search_trial, sweep_row
from sweeps.runner import check_database, run
from sweeps.spec import Sweep
from sweeps.stats import Comparison, StatsError, compare_scores, iqm_interval

__all__ = ["Side", "compare_sides", "main", "resolve_side"]


@dataclass(frozen=True)
class Side:
    spec: str
    description: str
    metric: str
    mode: str
    trial_ids: tuple[str, ...]
    scores: tuple[float, ...]
    flag_rates: tuple[float, ...]
    budget: int | None = None
    """Env steps per trial of the side's sweep (None: recorded before schema v4)."""
    first_flags: tuple[int | None, ...] = ()
    """Per run, the env steps of its first training iteration with a flag (None: never)."""

    def first_flag_text(self) -> str:
        """IQM of env steps to the first flag, a run that never got there counted at the budget
        (censored: the figure is a lower bound when some never did)."""
        if not self.first_flags or self.budget is None:
            return "-"
        never = sum(step is None for step in self.first_flags)
        steps = [self.budget if step is None else step for step in self.first_flags]
        interval = iqm_interval(steps, label=self.spec)
        return (
            f"{interval.value:,.0f} [{interval.low:,.0f}, {interval.high:,.0f}] env steps"
            f" (never: {never} of {len(steps)}, counted at the budget)"
        )


def resolve_side(db_url: str, spec: str) -> Side:
    """The runs side ``spec`` (``NAME`` or ``NAME:TRIAL``) stands for; ConfirmError if none."""
    name, _, trial = spec.partition(":")
    sweep = sweep_row(db_url, name)
    if trial:
        if not is_search_trial(db_url, sweep, trial):
            raise ConfirmError(
                f"{spec!r}: sweep {name!r} has no search trial {trial!r}; allowed: NAME:TRIAL "
                "with a trial id from its leaderboard"
            )
        rows = finished_runs(db_url, sweep, repeats=trial)
        description = f"config of {trial}, {len(rows)} confirm runs"
    elif confirmed := confirmed_configs(db_url, name):
        rows = finished_runs(db_url, sweep, repeats=confirmed[0].repeats)
        description = f"best confirmed config (of {confirmed[0].repeats}), {len(rows)} seeds"
    else:
        rows = finished_runs(db_url, sweep, repeats=None)
        description = f"every trial, {len(rows)} runs"
    if not rows:
        raise ConfirmError(
            f"{spec!r} has no finished full-budget runs ({description}); allowed: a config "
            "confirmed by python -m sweeps.confirm, or a sweep with trials that ran its budget"
        )
    return Side(
        spec=spec,
        description=description,
        budget=(sweep["settings"] or {}).get("max_env_steps"),
        metric=sweep["metric"],
        mode=sweep["mode"],
        trial_ids=tuple(r["trial_id"] for r in rows),
        scores=tuple(r["final_metric"] for r in rows),
        flag_rates=tuple(r["flag_rate"] for r in rows if r["flag_rate"] is not None),
        first_flags=tuple(r["first_flag"] for r in rows),
    )


def compare_sides(sides: list[Side]) -> tuple[list[Comparison], str]:
    """The first side against each other one, and the printed report."""
    metric = sides[0].metric
    for side in sides[1:]:
        if side.metric != metric or side.mode != sides[0].mode:
            raise ConfirmError(
                f"{side.spec!r} is scored by {side.metric} ({side.mode}), {sides[0].spec!r} by "
                f"{metric} ({sides[0].mode}); allowed: sides with the same metric"
            )
    seen: dict[tuple[str, ...], str] = {}
    for side in sides:
        if side.trial_ids in seen:
            raise ConfirmError(
                f"{side.spec!r} is the same runs as {seen[side.trial_ids]!r}; allowed: "
                "two different configs or sweeps"
            )
        seen[side.trial_ids] = side.spec
    lines = [f"final {metric}: IQM over runs [95 % bootstrap CI]"]
    for label, side in zip(_labels(len(sides)), sides, strict=True):
        final = iqm_interval(side.scores, label=side.spec)
        flags = (
            iqm_interval(side.flag_rates, label=side.spec)
            if len(side.flag_rates) == len(side.scores)
            else None
        )
        lines.append(
            f"{label}  {side.spec:<36} {side.description:<44} {final!s:>28}  "
            f"eval flag rate {interval_text(flags, percent=True)}\n"
            f"   first flag in training: {side.first_flag_text()}"
        )
    budgets = {side.budget for side in sides if side.budget is not None}
    if len(budgets) > 1:
        raise ConfirmError(
            "the sides ran different budgets ("
            + ", ".join(f"{s.spec!r} {s.budget:,} env steps" for s in sides if s.budget)
            + "); allowed: sides with the same env-step budget per trial"
        )
    comparisons = []
    for label, side in zip(_labels(len(sides))[1:], sides[1:], strict=True):
        c = compare_scores(
            sides[0].scores,
            side.scores,
            a_label=sides[0].spec,
            b_label=side.spec,
            mode=sides[0].mode,
        )
        comparisons.append(c)
        lines.append(
            f"A - {label}  difference {c.difference}  P(A > {label}) "
            f"{c.probability_of_improvement:.2f}\nverdict: {c.verdict}"
        )
    return comparisons, "\n".join(lines)


def _labels(n: int) -> list[str]:
    return [chr(ord("A") + i) if i < 26 else f"#{i + 1}" for i in range(n)]


def comparison_report(db_url: str, specs: list[str]) -> str:
    sides = [resolve_side(db_url, spec) for spec in specs]
    return compare_sides(sides)[1]


def run_and_compare(sweeps: list[Sweep], argv: list[str] | None = None) -> int:
    """Run several sweeps with the same flags, one after the other, then compare them over
    their trials' final metrics (``python -m sweeps.compare``: IQM, CIs, a verdict).

    Each runs as ``<name>-<algo>`` (``dqn_vs_ppo-ppo``). Every sweep's options and name are
    checked before the first one starts.
    """
    try:
        runs = [
            parse_options(sweep, argv, name_suffix=f"-{sweep.algo.lower()}") for sweep in sweeps
        ]
        db_url = runs[0].db_url or embedded_db_url()
        for options in runs:
            check_database(options, db_url)
        for options in runs:
            code = run(options)
            if code != 0:
                return code
        try:
            print(comparison_report(db_url, [o.name for o in runs]))
        except (ConfirmError, StatsError, ReportError) as err:  # e.g. too few runs for a CI
            print(f"comparison: {err}", file=sys.stderr)
        return 0
    except (SweepError, CheckpointError, StoreError, ReportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m sweeps.compare",
        description="Compare configs over seeds: IQM with 95 % bootstrap intervals, the "
        "difference, P(A > B) and a verdict. A side is a sweep NAME or NAME:TRIAL.",
    )
    parser.add_argument("sides", nargs="+", metavar="SIDE", help="NAME or NAME:TRIAL")
    add_db_url_flag(parser)
    try:
        args = parser.parse_args(argv)
        if len(args.sides) < 2:
            raise ConfirmError(f"{len(args.sides)} side given; allowed: two or more (A B [C ...])")
        print(comparison_report(db_url_of(args), args.sides))
    except (ConfirmError, StatsError, StoreError, SweepError, ReportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
