"""What a sweep prints at its end: the confirmed configs and the leaderboard of its search.

``params_text`` is how searched values are written everywhere (console, HTML tables, compare).
The rows come from :mod:`sweeps.queries`; the HTML page is :mod:`sweeps.report`.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sweeps.queries import leaderboard_rows
from sweeps.schedule import Schedule
from sweeps.stats import ConfirmedConfig, Interval, summarise_confirmed

__all__ = ["confirmed_table", "interval_text", "leaderboard", "params_text"]


def params_text(params: Mapping[str, Any] | None, width: int | None = None) -> str:
    """``lr=0.000251, entropy_coeff=0.01`` (floats to 3 significant digits), cut at ``width``.

    >>> params_text({"lr": 2.51234e-4, "num_epochs": 8})
    'lr=0.000251, num_epochs=8'
    """
    text = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (params or {}).items()
    )
    return text if width is None else text[:width]


def interval_text(interval: Interval | None, *, percent: bool = False) -> str:
    if interval is None:
        return "-"
    if percent:
        return f"{interval.value:.0%} [{interval.low:.0%}, {interval.high:.0%}]"
    return str(interval)


def confirmed_table(configs: Sequence[ConfirmedConfig], *, metric: str) -> str:
    """The console table of confirmed configs (empty string when there are none)."""
    if not configs:
        return ""
    lines = [
        "",
        f"confirmed configs (IQM over seeds [95 % bootstrap CI]; final {metric} = mean over "
        "the last 10 % of the budget)",
        f"{'rank':<4} {'config of':<10} {'params':<40} {'N':>3} {'final metric IQM':>30} "
        f"{'eval flag rate IQM':>22} {'P(#1 > this)':>12}",
    ]
    for rank, c in enumerate(configs, 1):
        final = interval_text(c.final) if c.final else f"{c.scores[0]:,.1f} (1 seed)"
        poi = "-" if c.probability_of_improvement is None else f"{c.probability_of_improvement:.2f}"
        lines.append(
            f"{rank:<4} {c.repeats:<10} {params_text(c.params, 40):<40} {c.n:>3} {final:>30} "
            f"{interval_text(c.flag_rate, percent=True):>22} {poi:>12}"
        )
    return "\n".join(lines)


def _fmt(value, spec: str) -> str:
    digits = re.match(r"\d*", spec)
    assert digits is not None  # \d* matches at the start of any string
    width = int(digits.group() or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def leaderboard(db_url: str, name: str) -> str:
    """The confirmed configs (IQM over seeds) first, then a table of the search trials, best
    first, and the best checkpoint's path."""
    sweep, rows, confirm_runs = leaderboard_rows(db_url, name)
    metric = sweep["metric"]
    confirmed = summarise_confirmed(confirm_runs, mode=sweep["mode"])
    header = (
        f"{'trial':<10} {'params':<44} {metric:>22} {'best return':>11} {'best x_pos':>10} "
        f"{'flags':>5} {'stop reason':>11} {'env steps':>10} {'eval x_pos':>10} {'eval flags':>10}"
    )
    title = f"leaderboard ({len(rows)} search trials, best first by {metric})"
    schedule = Schedule.from_record(sweep["scheduler"])
    if schedule is not None and schedule.population:
        title = (
            f"leaderboard ({len(rows)} members, best first by {metric}; params: each member's "
            "values now, after its exploits; the report draws their paths)"
        )
    table = confirmed_table(confirmed, metric=metric)
    lines = [table] if table else []
    lines += ["", title, header]
    for r in rows:
        lines.append(
            f"{r['trial_id']:<10} {params_text(r['params'], 44):<44} "
            f"{_fmt(r['best_metric'], '22.2f')} "
            f"{_fmt(r['best_return'], '11.2f')} {_fmt(r['best_x_pos'], '10d')} {r['flags']:>5} "
            f"{r['stop_reason'] or '-':>11} {_fmt(r['last_env_steps'], '10,d')} "
            f"{_fmt(r['eval_x_pos'], '10,.0f')} {_fmt(r['eval_flag_rate'], '10.0%')}"
        )
    evaluated = next((r for r in rows if r["eval_episodes"]), None)
    if evaluated is not None:
        lines.append(
            f"eval: {evaluated['eval_episodes']} episodes, "
            f"{evaluated['eval_protocol'] or 'greedy, no randomised starts'}"
        )
    best = next((r for r in rows if r["best_checkpoint"]), None)
    lines.append(f"best checkpoint: {best['best_checkpoint'] if best else '(none recorded)'}")
    return "\n".join(lines)
