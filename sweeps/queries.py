"""Every read the sweep report makes: SQL against schema ``mario_sweeps`` and the Optuna study.

PostgreSQL is the source of truth, and a sweep may still be writing to it: :func:`read_sweep`
runs all its queries in one read-only REPEATABLE READ transaction, so the trials, iterations and
episodes on one page come from the same moment. Nothing here writes, not even Optuna's tables
(``optuna.storages.RDBStorage`` creates them when missing, so the study is opened only after SQL
has shown that it exists).

How an episode ended (the ``episodes`` table has no "why" column, and the env's
``max_episode_steps`` is not stored): ``flag`` when ``flag_get``; else ``time-out`` when the game
clock ran out (``time_left = 0``); else ``death``. An episode truncated by ``max_episode_steps``
with time left therefore counts as a death.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import psycopg2

from callbacks.store import connect, connect_check, mask_url, split_password, sqlalchemy_url
from callbacks.store.errors import StoreError, one_line
from envs import EnvConfigError, MarioEnvConfig, validate_env_config

__all__ = [
    "CURVE_COLUMNS",
    "ENDINGS",
    "EndHistogram",
    "Importances",
    "ReportError",
    "SweepData",
    "fetch_dicts",
    "read_sweep",
    "study_importances",
]

MIN_COMPLETE_TRIALS = 4
"""Fewer COMPLETE Optuna trials than this and importances are noise (PED-ANOVA needs a few)."""

HISTOGRAM_BINS = 40
ENDINGS = ("death", "flag", "time-out")

CURVE_COLUMNS = (
    "training_iteration",
    "env_steps",
    "metric",
    "x_pos_mean",
    "x_pos_max",
    "flag_rate",
    "entropy",
    "kl",
    "loss",
    "vf_loss",
)


class ReportError(RuntimeError):
    """Why no report can be made, in one line (unknown sweep, no results schema, bad --out)."""


@dataclass(frozen=True)
class EndHistogram:
    """Episode-end x positions binned per trial and ending; bins are ``edges[i]..edges[i+1]``."""

    edges: np.ndarray
    counts: dict[str, dict[str, np.ndarray]]  # trial_id -> ending -> counts per bin


@dataclass(frozen=True)
class SweepData:
    """One consistent snapshot of a sweep: its row, trials (best first), curves, episode ends."""

    sweep: dict[str, Any]
    trials: list[dict[str, Any]]
    curves: dict[str, dict[str, np.ndarray]]  # trial_id -> CURVE_COLUMNS -> values per iteration
    ends: EndHistogram
    episodes: dict[str, int] = field(default_factory=dict)  # trial_id -> episodes stored
    lineage: list[dict[str, Any]] = field(default_factory=list)
    """PBT exploit and collapse events in order (``mario_sweeps.lineage`` rows); [] otherwise."""

    def search_only(self) -> "SweepData":
        """The search trials alone (confirm re-runs repeat their configs: not search points)."""
        trials = [t for t in self.trials if t.get("stage", "search") == "search"]
        return replace(self, trials=trials)


@dataclass(frozen=True)
class Importances:
    """Optuna's parameter importances, or the reason there are none (``values`` empty)."""

    values: dict[str, float]
    complete_trials: int
    note: str


_SWEEP_SQL = """
SELECT id, name, algo, search_space, metric, mode, scheduler, status, started_at, finished_at,
       settings
FROM mario_sweeps.sweeps WHERE name = %s
"""

_TRIALS_SQL = """
SELECT trial_id, params, status, stop_reason, best_metric, best_checkpoint, error, last_env_steps,
       started_at, finished_at, stage, seed, repeats, final_metric
FROM mario_sweeps.trials WHERE sweep_id = %s
ORDER BY best_metric {order} NULLS LAST, trial_id
"""

# PPO's value loss lives only in the stored result; DQN has none (NULL).
_ITERATIONS_SQL = """
SELECT trial_id, training_iteration, env_steps_lifetime, metric, x_pos_mean, x_pos_max,
       flag_rate, entropy, kl, loss,
       CASE WHEN jsonb_typeof(result #> '{learners,default_policy,vf_loss}') = 'number'
            THEN (result #>> '{learners,default_policy,vf_loss}')::double precision END
FROM mario_sweeps.iterations WHERE sweep_id = %s
ORDER BY trial_id, training_iteration
"""


def max_episode_steps(settings: dict | None) -> int | None:
    """The step cap the sweep's env ran with (a stored sweep's ``settings``; None: uncapped)."""
    env_config = (settings or {}).get("env_config") or {}
    try:
        return validate_env_config(env_config).max_episode_steps
    except EnvConfigError:  # a row from a version with other env options: the default cap
        return MarioEnvConfig().max_episode_steps


ENDING_SQL = (
    "CASE WHEN flag_get THEN 'flag' WHEN time_left = 0 OR length >= %(max_steps)s "
    "THEN 'time-out' ELSE 'death' END"
)
"""``callbacks.records.episode_ending`` over an ``episodes`` row, in SQL."""

# Binned in the database, ending by ``callbacks.records.episode_ending``'s definition in SQL:
# a long sweep has millions of episodes, the page needs a few numbers.
_ENDS_SQL = """
WITH e AS (
    SELECT trial_id, greatest(x_pos, 0) AS x,
           {ending} AS ending
    FROM mario_sweeps.episodes WHERE sweep_id = %(sweep)s AND x_pos IS NOT NULL
), top AS (SELECT coalesce(max(x), 0) + 1 AS hi FROM e)
SELECT trial_id, ending, least(width_bucket(x, 0, top.hi, %(bins)s), %(bins)s) AS bin,
       count(*), top.hi
FROM e, top GROUP BY trial_id, ending, bin, top.hi
""".replace("{ending}", ENDING_SQL)

_EPISODE_COUNTS_SQL = """
SELECT trial_id, count(*) FROM mario_sweeps.episodes WHERE sweep_id = %s GROUP BY trial_id
"""


_LINEAGE_SQL = """
SELECT trial_id, training_iteration, kind, env_steps, donor, donor_iteration, donor_env_steps,
       metric, donor_metric, peak, old_params, new_params
FROM mario_sweeps.lineage WHERE sweep_id = %s
ORDER BY env_steps NULLS FIRST, created_at
"""


def _rows(cur: Any, sql: str, params: Any) -> list[tuple]:
    cur.execute(sql, params)
    return cur.fetchall()


def _dicts(cur: Any, sql: str, params: Any) -> list[dict[str, Any]]:
    cur.execute(sql, params)
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def fetch_dicts(db_url: str, sql: str, params: Any) -> list[dict[str, Any]]:
    """Run one query on a fresh connection; the rows as dicts by column name."""
    conn = connect(db_url)
    try:
        with conn, conn.cursor() as cur:
            return _dicts(cur, sql, params)
    finally:
        conn.close()


def _open(db_url: str) -> Any:
    """A read-only snapshot connection, or a one-line ReportError (password masked)."""
    try:
        connect_check(db_url)
    except StoreError as exc:
        raise ReportError(str(exc)) from None
    conn = connect(db_url)
    conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
    return conn


def _known_names(cur: Any) -> str:
    cur.execute("SELECT name FROM mario_sweeps.sweeps ORDER BY started_at DESC LIMIT 10")
    names = [row[0] for row in cur.fetchall()]
    return ", ".join(names) if names else "(none)"


def read_sweep(db_url: str, name: str) -> SweepData:
    """Everything the report shows about sweep ``name``, as recorded so far.

    Raises ReportError when the database cannot be reached, has no ``mario_sweeps.sweeps`` table,
    or has no sweep of that name.
    """
    conn = _open(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('mario_sweeps.sweeps')")
            if cur.fetchone()[0] is None:
                raise ReportError(
                    f"the database at {mask_url(db_url)} holds no sweep results (no table "
                    "mario_sweeps.sweeps); pass the sweeps' database with --db-url"
                )
            found = _dicts(cur, _SWEEP_SQL, (name,))
            if not found:
                raise ReportError(
                    f"no sweep named {name!r} in the database at {mask_url(db_url)}; "
                    f"latest sweeps: {_known_names(cur)}"
                )
            sweep = found[0]
            order = "DESC" if sweep["mode"] == "max" else "ASC"
            trials = _dicts(cur, _TRIALS_SQL.format(order=order), (sweep["id"],))
            curves = _curves(_rows(cur, _ITERATIONS_SQL, (sweep["id"],)))
            ends = _ends(
                _rows(
                    cur,
                    _ENDS_SQL,
                    {
                        "sweep": sweep["id"],
                        "bins": HISTOGRAM_BINS,
                        "max_steps": max_episode_steps(sweep.pop("settings")),
                    },
                )
            )
            episodes = dict(_rows(cur, _EPISODE_COUNTS_SQL, (sweep["id"],)))
            lineage = _dicts(cur, _LINEAGE_SQL, (sweep["id"],))
        conn.rollback()
    except psycopg2.Error as exc:
        raise ReportError(f"reading sweep {name!r} failed: {one_line(exc)}") from None
    finally:
        conn.close()
    return SweepData(
        sweep=sweep, trials=trials, curves=curves, ends=ends, episodes=episodes, lineage=lineage
    )


def _curves(rows: list[tuple]) -> dict[str, dict[str, np.ndarray]]:
    by_trial: dict[str, list[tuple]] = {}
    for row in rows:
        by_trial.setdefault(row[0], []).append(row[1:])
    curves = {}
    for trial_id, values in by_trial.items():
        # NULL becomes NaN, so a missing value is a gap in a line rather than an error.
        table = np.array(values, dtype=float)
        curves[trial_id] = {c: table[:, i] for i, c in enumerate(CURVE_COLUMNS)}
    return curves


def _ends(rows: list[tuple]) -> EndHistogram:
    hi = rows[0][4] if rows else 1
    edges = np.linspace(0, hi, HISTOGRAM_BINS + 1)
    counts: dict[str, dict[str, np.ndarray]] = {}
    for trial_id, ending, bin_number, count, _ in rows:
        per_ending = counts.setdefault(
            trial_id, {e: np.zeros(HISTOGRAM_BINS, dtype=int) for e in ENDINGS}
        )
        per_ending[ending][bin_number - 1] += count  # width_bucket numbers bins from 1
    return EndHistogram(edges=edges, counts=counts)


def _study_exists(db_url: str, study_name: str) -> bool:
    conn = _open(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('public.studies')")
            if cur.fetchone()[0] is None:
                return False
            cur.execute("SELECT 1 FROM public.studies WHERE study_name = %s", (study_name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def study_importances(db_url: str, study_name: str) -> Importances:
    """Optuna's parameter importances (its default evaluator) for ``study_name``, once at least
    :data:`MIN_COMPLETE_TRIALS` trials are COMPLETE; otherwise a note saying why not."""
    import optuna
    from optuna.trial import TrialState

    if not _study_exists(db_url, study_name):
        return Importances({}, 0, f"no Optuna study named {study_name!r} in this database")
    password = split_password(db_url)[1]
    storage = optuna.storages.RDBStorage(
        sqlalchemy_url(db_url),
        engine_kwargs={"connect_args": {"password": password}} if password else None,
    )
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if complete < MIN_COMPLETE_TRIALS:
            return Importances(
                {},
                complete,
                f"{complete} COMPLETE trial(s) in study {study_name!r}; importances need at "
                f"least {MIN_COMPLETE_TRIALS}",
            )
        try:
            values = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError) as exc:  # e.g. every trial scored the same
            return Importances({}, complete, f"Optuna could not rank the parameters: {exc}")
    finally:
        storage.engine.dispose()
    clean = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    note = f"from {complete} COMPLETE trials of study {study_name!r} (Optuna's default evaluator)"
    return Importances(clean, complete, note)
