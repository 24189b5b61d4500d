"""Our tables' columns, the rows Tune results become, and the SQL that writes them.

Nothing here opens a connection: the writers take a cursor inside the store's transaction. Every
value in a row is a plain JSON value (NaN and infinities become None, numpy scalars Python
numbers, classes and callables their qualified names), so a row can go to PostgreSQL, into the
outbox's spill file, and back unchanged. Every write is an idempotent upsert: replaying the outbox
or re-delivering a result never duplicates a row.

>>> json_safe({"lr": float("nan"), "env": dict, "sizes": (64, 64)})
{'lr': None, 'env': 'builtins.dict', 'sizes': [64, 64]}
"""

import enum
import math
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import psycopg2.extras
from psycopg2.extras import Json

from callbacks.records import ENV_STEPS_KEY, EPISODE_COLUMNS, EPISODES_KEY, lookup, metric_key

__all__ = [
    "BC_ITERATION_COLUMNS",
    "DEMONSTRATION_COLUMNS",
    "EPISODE_COLUMNS",
    "EVALUATION_COLUMNS",
    "ITERATION_COLUMNS",
    "LINEAGE_COLUMNS",
    "TRIAL_COLUMNS",
    "WRITERS",
    "domain_data",
    "iteration_row",
    "json_safe",
]

TRIAL_COLUMNS = (
    "params",
    "status",
    "stop_reason",
    "best_metric",
    "best_checkpoint",
    "error",
    "node_ip",
    "last_env_steps",
    "started_at",
    "finished_at",
    "stage",
    "seed",
    "repeats",
    "final_metric",
)
ITERATION_COLUMNS = (
    "training_iteration",
    "env_steps_lifetime",
    "metric",
    "return_smoothed",
    "x_pos_smoothed",
    "episode_return_mean",
    "episode_return_max",
    "x_pos_mean",
    "x_pos_max",
    "flag_rate",
    "episodes",
    "loss",
    "entropy",
    "kl",
    "time_total_s",
    "node_ip",
    "result",
)
EVALUATION_COLUMNS = (
    "checkpoint",
    "policy",
    "episode",
    "task_id",
    "episode_return",
    "x_pos",
    "flag_get",
    "length",
    "video",
    "protocol",
    "env_steps",
    "training_iteration",
)
LINEAGE_COLUMNS = (
    "training_iteration",
    "kind",
    "env_steps",
    "donor",
    "donor_iteration",
    "donor_env_steps",
    "checkpoint",
    "metric",
    "donor_metric",
    "peak",
    "old_params",
    "donor_params",
    "new_params",
)
DEMONSTRATION_COLUMNS = (
    "eps_id",
    "source",
    "task_id",
    "steps",
    "episode_return",
    "x_pos",
    "flag_get",
    "path",
)
BC_ITERATION_COLUMNS = ("iteration", "policy_loss", "checkpoint")
_JSONB_COLUMNS = frozenset(
    {"params", "result", "search_space", "scheduler", "settings"}
    | {"old_params", "donor_params", "new_params"}
)
# A restarted trial keeps its first start time.
_KEEP_FIRST = frozenset({"started_at"})
# Tune copies the whole trial config into every result; it is in trials.params already.
_RESULT_KEYS_NOT_STORED = frozenset({EPISODES_KEY, "config"})


# -- values ------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON values; anything JSON cannot hold becomes a readable string.
    Enums become their values: RLlib's config holds str-enums, and unpickling one imports its
    module (the W&B logging actor gets its config through here too)."""
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        # PostgreSQL text and jsonb cannot hold NUL characters.
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "domain_str") and hasattr(value, "get_sampler"):
        return domain_data(value)
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        if name:
            return f"{module}.{name}" if module else name
    return repr(value)


def domain_data(domain: Any) -> dict[str, Any]:
    """A Tune search domain as data: its type, bounds or choices, and its sampler (log, q)."""
    sampler = domain.get_sampler()
    data: dict[str, Any] = {"type": type(domain).__name__.lower()}
    if hasattr(domain, "categories"):
        data["choices"] = json_safe(list(domain.categories))
    else:
        data["low"], data["high"] = json_safe(domain.lower), json_safe(domain.upper)
    inner = getattr(sampler, "sampler", sampler)  # a Quantized wraps its sampler
    data["log"] = type(inner).__name__.lstrip("_") == "LogUniform"
    if hasattr(sampler, "q"):
        data["q"] = json_safe(sampler.q)
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _text(value: Any) -> str | None:
    return None if value is None else json_safe(str(value))


# -- rows --------------------------------------------------------------------------------------


def iteration_row(result: Mapping[str, Any], *, metric: str) -> dict[str, Any]:
    """The ``iterations`` row for one training result.

    The episode aggregates are the ones the trial actor computed (``mario/...`` keys, see
    :class:`~callbacks.episode_recorder.EpisodeRecorder`); ``x_pos_mean``/``x_pos_max`` use each
    episode's furthest x. ``metric`` is the sweep's flattened metric key, stored as ``metric``.
    """
    learner = (result.get("learners") or {}).get("default_policy") or {}

    def ours(name: str) -> float | None:
        return _number(result.get(metric_key(name)))

    stored = {k: v for k, v in result.items() if k not in _RESULT_KEYS_NOT_STORED}
    return {
        "training_iteration": int(result["training_iteration"]),
        "env_steps_lifetime": _integer(result.get(ENV_STEPS_KEY)),
        "metric": _number(lookup(result, metric)),
        "return_smoothed": ours("return_smoothed"),
        "x_pos_smoothed": ours("x_pos_smoothed"),
        "episode_return_mean": ours("return_mean"),
        "episode_return_max": ours("return_max"),
        "x_pos_mean": ours("x_pos_mean"),
        "x_pos_max": ours("x_pos_max"),
        "flag_rate": ours("flag_rate"),
        "episodes": _integer(result.get(metric_key("episodes"))),
        "loss": _number(learner.get("total_loss", learner.get("qf_loss"))),
        "entropy": _number(learner.get("entropy")),
        "kl": _number(learner.get("mean_kl_loss")),
        "time_total_s": _number(result.get("time_total_s")),
        "node_ip": _text(result.get("node_ip") or result.get("hostname")),
        "result": json_safe(stored),
    }


# -- SQL ---------------------------------------------------------------------------------------


def _values(row: Mapping[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(Json(row.get(c)) if c in _JSONB_COLUMNS else row.get(c) for c in columns)


def _write_trials(cur: Any, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        columns = [c for c in TRIAL_COLUMNS if c in row]
        updates = ", ".join(
            f"{c} = coalesce(trials.{c}, EXCLUDED.{c})"
            if c in _KEEP_FIRST
            else f"{c} = EXCLUDED.{c}"
            for c in columns
        )
        cur.execute(
            f"INSERT INTO mario_sweeps.trials AS trials (sweep_id, trial_id, {', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * (len(columns) + 2))})"
            " ON CONFLICT (sweep_id, trial_id) DO "
            + (f"UPDATE SET {updates}" if columns else "NOTHING"),
            (row["sweep_id"], row["trial_id"], *_values(row, columns)),
        )


def _write_iterations(cur: Any, rows: list[dict[str, Any]]) -> None:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ITERATION_COLUMNS[1:])
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO mario_sweeps.iterations (sweep_id, trial_id, {', '.join(ITERATION_COLUMNS)})"
        " VALUES %s ON CONFLICT (sweep_id, trial_id, training_iteration)"
        f" DO UPDATE SET {updates}",
        [(r["sweep_id"], r["trial_id"], *_values(r, ITERATION_COLUMNS)) for r in rows],
        page_size=1_000,
    )


def _write_episodes(cur: Any, rows: list[dict[str, Any]]) -> None:
    # An episode's facts never change, so a re-delivered episode is simply skipped.
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO mario_sweeps.episodes (sweep_id, trial_id, {', '.join(EPISODE_COLUMNS)})"
        " VALUES %s ON CONFLICT (sweep_id, trial_id, episode_id) DO NOTHING",
        [(r["sweep_id"], r["trial_id"], *_values(r, EPISODE_COLUMNS)) for r in rows],
        page_size=5_000,
    )


def _write_evaluations(cur: Any, rows: list[dict[str, Any]]) -> None:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in EVALUATION_COLUMNS[3:])
    columns = ", ".join(EVALUATION_COLUMNS)
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO mario_sweeps.evaluations (sweep_id, trial_id, {columns})"
        " VALUES %s ON CONFLICT (sweep_id, trial_id, checkpoint, policy, episode, during_training)"
        f" DO UPDATE SET {updates}",
        [(r["sweep_id"], r["trial_id"], *_values(r, EVALUATION_COLUMNS)) for r in rows],
    )


def _write_lineage(cur: Any, rows: list[dict[str, Any]]) -> None:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in LINEAGE_COLUMNS[2:])
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO mario_sweeps.lineage (sweep_id, trial_id, {', '.join(LINEAGE_COLUMNS)})"
        " VALUES %s ON CONFLICT (sweep_id, trial_id, training_iteration, kind)"
        f" DO UPDATE SET {updates}",
        [(r["sweep_id"], r["trial_id"], *_values(r, LINEAGE_COLUMNS)) for r in rows],
    )


def _write_demonstrations(cur: Any, rows: list[dict[str, Any]]) -> None:
    # A recorded episode's facts never change.
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO mario_sweeps.demonstrations (sweep_id, {', '.join(DEMONSTRATION_COLUMNS)})"
        " VALUES %s ON CONFLICT (sweep_id, eps_id) DO NOTHING",
        [(r["sweep_id"], *_values(r, DEMONSTRATION_COLUMNS)) for r in rows],
    )


def _write_bc_iterations(cur: Any, rows: list[dict[str, Any]]) -> None:
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO mario_sweeps.bc_iterations (sweep_id, {', '.join(BC_ITERATION_COLUMNS)})"
        " VALUES %s ON CONFLICT (sweep_id, iteration) DO NOTHING",
        [(r["sweep_id"], *_values(r, BC_ITERATION_COLUMNS)) for r in rows],
    )


def _write_sweep_status(cur: Any, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        cur.execute(
            "UPDATE mario_sweeps.sweeps SET status = %s, finished_at = %s WHERE id = %s",
            (row["status"], row["finished_at"], row["sweep_id"]),
        )


def _write_final_metrics(cur: Any, rows: list[dict[str, Any]]) -> None:
    """Score an ended trial (see ``sweeps.stats.FINAL_METRIC``): the mean of its metric over
    the iterations of its last ``tail_env_steps`` env steps. Queued behind the trial's iteration
    rows, so it sees all of them."""
    for row in rows:
        cur.execute(
            "UPDATE mario_sweeps.trials t SET final_metric = ("
            " SELECT avg(i.metric) FROM mario_sweeps.iterations i"
            " WHERE i.sweep_id = t.sweep_id AND i.trial_id = t.trial_id"
            " AND i.env_steps_lifetime >= ("
            "  SELECT max(env_steps_lifetime) FROM mario_sweeps.iterations"
            "  WHERE sweep_id = t.sweep_id AND trial_id = t.trial_id) - %s)"
            " WHERE t.sweep_id = %s AND t.trial_id = %s",
            (row["tail_env_steps"], row["sweep_id"], row["trial_id"]),
        )


def _rewind_trials(cur: Any, rows: list[dict[str, Any]]) -> None:
    """Forget what a trial recorded from ``from_iteration`` on: it is about to replay them."""
    for row in rows:
        for table in ("episodes", "iterations", "lineage", "evaluations"):
            cur.execute(
                f"DELETE FROM mario_sweeps.{table}"
                " WHERE sweep_id = %s AND trial_id = %s AND training_iteration >= %s",
                (row["sweep_id"], row["trial_id"], row["from_iteration"]),
            )


WRITERS: dict[str, Callable[[Any, list[dict[str, Any]]], None]] = {
    "rewind": _rewind_trials,
    "trials": _write_trials,
    "iterations": _write_iterations,
    "episodes": _write_episodes,
    "evaluations": _write_evaluations,
    "sweep_status": _write_sweep_status,
    "final_metric": _write_final_metrics,
    "lineage": _write_lineage,
    "demonstrations": _write_demonstrations,
    "bc_iterations": _write_bc_iterations,
}
"""One writer per kind of outbox op; each takes a cursor and that op's rows."""
