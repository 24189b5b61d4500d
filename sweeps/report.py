"""The end-of-sweep leaderboard, read back from the results store (what was really recorded)."""

import json

from callbacks.store import connect

__all__ = ["LEADERBOARD_SQL", "comparison", "leaderboard", "leaderboard_rows"]

LEADERBOARD_SQL = """
SELECT t.trial_id, t.params, t.best_metric, t.stop_reason, t.last_env_steps, t.best_checkpoint,
       max(e.episode_return) AS best_return, max(e.x_pos_max) AS best_x_pos,
       count(*) FILTER (WHERE e.flag_get) AS flags, count(e.episode_id) AS episodes
FROM mario_sweeps.trials t
LEFT JOIN mario_sweeps.episodes e ON e.sweep_id = t.sweep_id AND e.trial_id = t.trial_id
JOIN mario_sweeps.sweeps s ON s.id = t.sweep_id
WHERE s.name = %s
GROUP BY t.sweep_id, t.trial_id
ORDER BY t.best_metric {order} NULLS LAST, t.trial_id
"""


COMPARISON_SQL = """
SELECT s.name, s.algo, count(DISTINCT t.trial_id) AS trials,
       avg(t.best_metric) AS mean_best_metric, stddev_samp(t.best_metric) AS std_best_metric,
       max(e.x_pos_max) AS best_x_pos, avg(e.flag_get::int) AS flag_rate,
       count(e.episode_id) AS episodes
FROM mario_sweeps.sweeps s
JOIN mario_sweeps.trials t ON t.sweep_id = s.id
LEFT JOIN mario_sweeps.episodes e ON e.sweep_id = t.sweep_id AND e.trial_id = t.trial_id
WHERE s.name = ANY(%s)
GROUP BY s.name, s.algo
ORDER BY s.name
"""


def _query(db_url: str, sql: str, params: tuple) -> list[dict]:
    conn = connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def leaderboard_rows(db_url: str, name: str) -> tuple[dict, list[dict]]:
    """The sweep row (metric, mode, status) and its trials, best first."""
    sweeps = _query(
        db_url, "SELECT metric, mode, status FROM mario_sweeps.sweeps WHERE name = %s", (name,)
    )
    if not sweeps:
        return {}, []
    order = "DESC" if sweeps[0]["mode"] == "max" else "ASC"
    return sweeps[0], _query(db_url, LEADERBOARD_SQL.format(order=order), (name,))


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def leaderboard(db_url: str, name: str) -> str:
    """A table of the sweep's trials, best first, and the best checkpoint's path."""
    sweep, rows = leaderboard_rows(db_url, name)
    metric = sweep.get("metric", "metric")
    header = (
        f"{'trial':<10} {'params':<44} {metric:>22} {'best return':>11} {'best x_pos':>10} "
        f"{'flags':>5} {'stop reason':>11} {'env steps':>10}"
    )
    lines = ["", f"leaderboard ({len(rows)} trials, best first by {metric})", header]
    for r in rows:
        params = json.dumps(
            {
                k: float(f"{v:.3g}") if isinstance(v, float) else v
                for k, v in (r["params"] or {}).items()
            },
            separators=(",", ":"),
        )
        lines.append(
            f"{r['trial_id']:<10} {params[:44]:<44} {_fmt(r['best_metric'], '22.2f')} "
            f"{_fmt(r['best_return'], '11.2f')} {_fmt(r['best_x_pos'], '10d')} {r['flags']:>5} "
            f"{r['stop_reason'] or '-':>11} {_fmt(r['last_env_steps'], '10,d')}"
        )
    best = next((r for r in rows if r["best_checkpoint"]), None)
    lines.append(f"best checkpoint: {best['best_checkpoint'] if best else '(none recorded)'}")
    return "\n".join(lines)


def comparison(db_url: str, names: list[str], *, metric: str) -> str:
    """Sweeps side by side: mean +- std of the trials' best metric, best x_pos, flag rate."""
    rows = _query(db_url, COMPARISON_SQL, (names,))
    lines = [
        "",
        f"{'sweep':<28} {'algo':<5} {'trials':>6} {metric + ' (mean +- std)':>36} "
        f"{'best x_pos':>10} {'flag rate':>9} {'episodes':>8}",
    ]
    for r in rows:
        spread = f"{_fmt(r['mean_best_metric'], '.1f')} +- {_fmt(r['std_best_metric'], '.1f')}"
        rate = "-" if r["flag_rate"] is None else f"{float(r['flag_rate']):.1%}"
        lines.append(
            f"{r['name']:<28} {r['algo']:<5} {r['trials']:>6} {spread:>36} "
            f"{_fmt(r['best_x_pos'], '10d')} {rate:>9} {r['episodes']:>8}"
        )
    return "\n".join(lines)
