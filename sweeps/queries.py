"""Every read the sweep report makes: SQL against schema ``mario_sweeps`` and the Optuna study.

PostgreSQL is the source of truth, and a sweep may still be writing to it: :func:`read_sweep`
runs all its queries in one read-only REPEATABLE READ transaction, so the trials, iterations and
episodes on one page come from the same moment. Nothing here writes, not even Optuna's tables
(``optuna.storages.RDBStorage`` creates them when missing, so the study is opened only after SQL
has shown that it exists).

Every SELECT of ``sweeps/`` is here: the report's snapshot (:func:`read_sweep`), the console
leaderboard, what the confirm stage plans from, what ``sweeps.compare`` compares and what the
evaluation plays. A trial's "eval flag rate" is always its greedy evaluation episodes' mean
(:data:`_GREEDY_EVALUATIONS`), and "best first" is always :func:`_best_first`.

How an episode ended is ``callbacks.records.episode_ending`` (:data:`ENDING_SQL` says the same in
SQL): ``flag``; ``time-out`` when the game clock ran out or the sweep's ``max_episode_steps``
(read from its stored settings) cut it; else ``death``.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import psycopg2

from callbacks.records import CONFIRM_STAGE, SEARCH_STAGE
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
    "best_checkpoint",
    "confirm_inputs",
    "confirm_runs",
    "fetch_dicts",
    "finished_runs",
    "is_search_trial",
    "leaderboard_rows",
    "read_sweep",
    "study_importances",
    "sweep_row",
    "unevaluated_confirm_trials",
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
    """Why the results store cannot answer, in one line (unknown sweep, no results schema,
    unreachable server) or, for ``sweeps.report``, why no report can be written (bad --out)."""


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
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    """Search trials best first, with their episodes' and greedy evaluation's aggregates."""
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    """Every evaluation episode of a kept checkpoint after training (the best checkpoint's and
    the confirm trials')."""
    training_evaluations: list[dict[str, Any]] = field(default_factory=list)
    """Evaluations played during training (``--eval-every``): per trial and env steps, the
    episodes' mean x_pos and flag rate, in env-step order."""
    confirm_runs: list[dict[str, Any]] = field(default_factory=list)
    """Finished confirm trials: their config, seed, final metric and greedy eval flag rate."""
    demonstrations: list[dict[str, Any]] = field(default_factory=list)
    """The episodes the sweep's BC stage cloned (``sweeps/bc_ppo.py``); [] without one."""
    bc_iterations: list[dict[str, Any]] = field(default_factory=list)
    """The BC stage's iterations in order: policy loss, and the checkpoint kept there if any."""

    def search_only(self) -> "SweepData":
        """The search trials alone (confirm re-runs repeat their configs: not search points)."""
        trials = [t for t in self.trials if t.get("stage", SEARCH_STAGE) == SEARCH_STAGE]
        return replace(self, trials=trials)


@dataclass(frozen=True)
class Importances:
    """Optuna's parameter importances, or the reason there are none (``values`` empty)."""

    values: dict[str, float]
    complete_trials: int
    note: str


def _best_first(mode: str, column: str = "best_metric") -> str:
    """ORDER BY term: the sweep's best ``column`` first (by its mode), never-scored last."""
    return f"{column} {'DESC' if mode == 'max' else 'ASC'} NULLS LAST"


_SWEEP_SQL = """
SELECT id, name, algo, search_space, metric, mode, scheduler, status, started_at, finished_at,
       settings
FROM mario_sweeps.sweeps WHERE name = %s
"""

_TRIALS_SQL = """
SELECT trial_id, params, status, stop_reason, best_metric, best_checkpoint, error, last_env_steps,
       started_at, finished_at, stage, seed, repeats, final_metric
FROM mario_sweeps.trials WHERE sweep_id = %s
ORDER BY {order}, trial_id
"""

_GREEDY_EVALUATIONS = """(
    SELECT sweep_id, trial_id, avg(x_pos) AS x_pos_mean,
           avg(flag_get::int)::double precision AS flag_rate,
           count(*) AS episodes, max(protocol) AS protocol
    FROM mario_sweeps.evaluations WHERE policy = 'greedy' AND NOT during_training
    GROUP BY sweep_id, trial_id
)"""
"""Per evaluated trial: its kept checkpoint's greedy episodes' mean x_pos and flag rate (played
after training by ``sweeps.evaluation``; not those played during training, ``--eval-every``)."""

_LEADERBOARD_SQL = """
SELECT t.trial_id, t.params, t.best_metric, t.stop_reason, t.last_env_steps, t.best_checkpoint,
       max(e.episode_return) AS best_return, max(e.x_pos_max) AS best_x_pos,
       count(*) FILTER (WHERE e.flag_get) AS flags, count(e.episode_id) AS episodes,
       max(v.x_pos_mean) AS eval_x_pos, max(v.flag_rate) AS eval_flag_rate,
       max(v.episodes) AS eval_episodes, max(v.protocol) AS eval_protocol
FROM mario_sweeps.trials t
LEFT JOIN mario_sweeps.episodes e ON e.sweep_id = t.sweep_id AND e.trial_id = t.trial_id
LEFT JOIN {greedy} v ON v.sweep_id = t.sweep_id AND v.trial_id = t.trial_id
WHERE t.sweep_id = %(sweep)s AND t.stage = %(stage)s
GROUP BY t.sweep_id, t.trial_id
ORDER BY {order}, t.trial_id
"""

_EVALUATIONS_SQL = """
SELECT trial_id, checkpoint, policy, episode, task_id, episode_return, x_pos, flag_get, length,
       video, protocol
FROM mario_sweeps.evaluations WHERE sweep_id = %s AND NOT during_training
ORDER BY policy, episode
"""

_TRAINING_EVALUATIONS_SQL = """
SELECT trial_id, env_steps, avg(x_pos) AS x_pos_mean,
       avg(flag_get::int)::double precision AS flag_rate, count(*) AS episodes
FROM mario_sweeps.evaluations WHERE sweep_id = %s AND during_training
GROUP BY trial_id, env_steps
ORDER BY trial_id, env_steps
"""

_CONFIRMED_SQL = """
SELECT t.repeats, s.params, t.trial_id, t.seed, t.final_metric, v.flag_rate
FROM mario_sweeps.trials t
JOIN mario_sweeps.trials s ON s.sweep_id = t.sweep_id AND s.trial_id = t.repeats
LEFT JOIN {greedy} v ON v.sweep_id = t.sweep_id AND v.trial_id = t.trial_id
WHERE t.sweep_id = %(sweep)s AND t.stage = %(stage)s AND t.status = 'terminated'
  AND t.final_metric IS NOT NULL
ORDER BY t.repeats, t.seed
"""

_CANDIDATES_SQL = """
SELECT trial_id, params, best_metric FROM mario_sweeps.trials
WHERE sweep_id = %(sweep)s AND stage = %(stage)s AND best_metric IS NOT NULL
ORDER BY {order}, trial_id
"""

_FINISHED_CONFIRM_SQL = """
SELECT repeats, seed FROM mario_sweeps.trials
WHERE sweep_id = %(sweep)s AND stage = %(stage)s AND status = 'terminated'
"""

# A full-budget run: ended by its budget or by the collapse detector (whose stop is a result),
# not by ASHA, an error or an interruption.
_FINISHED_RUNS_SQL = """
SELECT t.trial_id, t.final_metric, v.flag_rate,
       (SELECT min(i.env_steps_lifetime) FROM mario_sweeps.iterations i
        WHERE i.sweep_id = t.sweep_id AND i.trial_id = t.trial_id AND i.flag_rate > 0)
           AS first_flag
FROM mario_sweeps.trials t
LEFT JOIN {greedy} v ON v.sweep_id = t.sweep_id AND v.trial_id = t.trial_id
WHERE t.sweep_id = %(sweep)s AND t.status = 'terminated' AND t.final_metric IS NOT NULL
  AND coalesce(t.stop_reason, 'completed') IN ('completed', 'collapse')
  AND {which}
ORDER BY t.trial_id
"""

_UNEVALUATED_CONFIRM_SQL = """
SELECT t.trial_id, t.best_checkpoint FROM mario_sweeps.trials t
WHERE t.sweep_id = %(sweep)s AND t.stage = %(stage)s AND t.status = 'terminated'
  AND t.best_checkpoint IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM mario_sweeps.evaluations v
                  WHERE v.sweep_id = t.sweep_id AND v.trial_id = t.trial_id
                    AND NOT v.during_training)
ORDER BY t.trial_id
"""

_BEST_CHECKPOINT_SQL = """
SELECT trial_id, best_checkpoint FROM mario_sweeps.trials
WHERE sweep_id = %(sweep)s AND stage = %(stage)s AND best_checkpoint IS NOT NULL
ORDER BY {order}, trial_id LIMIT 1
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


_DEMONSTRATIONS_SQL = """
SELECT eps_id, source, task_id, steps, episode_return, x_pos, flag_get, path
FROM mario_sweeps.demonstrations WHERE sweep_id = %s ORDER BY source, path
"""

_BC_ITERATIONS_SQL = """
SELECT iteration, policy_loss, checkpoint FROM mario_sweeps.bc_iterations
WHERE sweep_id = %s ORDER BY iteration
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


@contextmanager
def _reading(db_url: str, name: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(cursor, sweep row) of one read-only snapshot; a one-line ReportError when the database
    cannot be reached, holds no ``mario_sweeps.sweeps`` table, or no sweep ``name``."""
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
            yield cur, found[0]
        conn.rollback()
    except psycopg2.Error as exc:
        raise ReportError(f"reading sweep {name!r} failed: {one_line(exc)}") from None
    finally:
        conn.close()


def _stage(sweep: dict[str, Any], stage: str = SEARCH_STAGE, **more: Any) -> dict[str, Any]:
    return {"sweep": sweep["id"], "stage": stage, **more}


def read_sweep(db_url: str, name: str) -> SweepData:
    """Everything the report shows about sweep ``name``, as recorded so far, in one snapshot."""
    with _reading(db_url, name) as (cur, sweep):
        order = _best_first(sweep["mode"])
        trials = _dicts(cur, _TRIALS_SQL.format(order=order), (sweep["id"],))
        curves = _curves(_rows(cur, _ITERATIONS_SQL, (sweep["id"],)))
        max_steps = max_episode_steps(sweep.pop("settings"))
        bins = {"sweep": sweep["id"], "bins": HISTOGRAM_BINS, "max_steps": max_steps}
        ends = _ends(_rows(cur, _ENDS_SQL, bins))
        episodes = dict(_rows(cur, _EPISODE_COUNTS_SQL, (sweep["id"],)))
        lineage = _dicts(cur, _LINEAGE_SQL, (sweep["id"],))
        leaderboard = _leaderboard(cur, sweep)
        evaluations = _dicts(cur, _EVALUATIONS_SQL, (sweep["id"],))
        training_evaluations = _dicts(cur, _TRAINING_EVALUATIONS_SQL, (sweep["id"],))
        confirm_runs = _confirm_runs(cur, sweep)
        demonstrations = _dicts(cur, _DEMONSTRATIONS_SQL, (sweep["id"],))
        bc_iterations = _dicts(cur, _BC_ITERATIONS_SQL, (sweep["id"],))
    return SweepData(
        sweep=sweep,
        trials=trials,
        curves=curves,
        ends=ends,
        episodes=episodes,
        lineage=lineage,
        leaderboard=leaderboard,
        evaluations=evaluations,
        training_evaluations=training_evaluations,
        confirm_runs=confirm_runs,
        demonstrations=demonstrations,
        bc_iterations=bc_iterations,
    )


def _leaderboard(cur: Any, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    sql = _LEADERBOARD_SQL.format(greedy=_GREEDY_EVALUATIONS, order=_best_first(sweep["mode"]))
    return _dicts(cur, sql, _stage(sweep))


def _confirm_runs(cur: Any, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    sql = _CONFIRMED_SQL.format(greedy=_GREEDY_EVALUATIONS)
    return _dicts(cur, sql, _stage(sweep, CONFIRM_STAGE))


def sweep_row(db_url: str, name: str) -> dict[str, Any]:
    """The sweep row named ``name`` (settings included), or a one-line ReportError."""
    with _reading(db_url, name) as (_, sweep):
        return sweep


def leaderboard_rows(db_url: str, name: str) -> tuple[dict, list[dict], list[dict]]:
    """The console leaderboard's snapshot: the sweep row, its search trials best first, and its
    finished confirm runs."""
    with _reading(db_url, name) as (cur, sweep):
        return sweep, _leaderboard(cur, sweep), _confirm_runs(cur, sweep)


def confirm_runs(db_url: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sweep row and its finished confirm trials (config, seed, final metric, flag rate)."""
    with _reading(db_url, name) as (cur, sweep):
        return sweep, _confirm_runs(cur, sweep)


def confirm_inputs(db_url: str, name: str) -> tuple[dict, list[dict], set[tuple[str, int]]]:
    """What the confirm stage plans from: the sweep row, its scored search trials best first,
    and the (repeated trial, seed) pairs of confirm trials that already finished."""
    with _reading(db_url, name) as (cur, sweep):
        sql = _CANDIDATES_SQL.format(order=_best_first(sweep["mode"]))
        candidates = _dicts(cur, sql, _stage(sweep))
        finished = _rows(cur, _FINISHED_CONFIRM_SQL, _stage(sweep, CONFIRM_STAGE))
        return sweep, candidates, {(repeats, seed) for repeats, seed in finished}


def finished_runs(db_url: str, sweep: dict[str, Any], *, repeats: str | None) -> list[dict]:
    """Full-budget runs (final metric, greedy eval flag rate, env steps of the iteration that
    first reached the flag in training: None if none did) of the confirm trials repeating
    search trial ``repeats``, or (None) of the sweep's search trials."""
    which = "t.repeats = %(repeats)s" if repeats else "t.stage = %(stage)s"
    sql = _FINISHED_RUNS_SQL.format(greedy=_GREEDY_EVALUATIONS, which=which)
    return fetch_dicts(db_url, sql, _stage(sweep, repeats=repeats))


def is_search_trial(db_url: str, sweep: dict[str, Any], trial_id: str) -> bool:
    sql = "SELECT 1 FROM mario_sweeps.trials WHERE sweep_id = %(sweep)s AND trial_id = %(trial)s"
    return bool(fetch_dicts(db_url, sql + " AND stage = %(stage)s", _stage(sweep, trial=trial_id)))


def unevaluated_confirm_trials(db_url: str, sweep: dict[str, Any]) -> list[tuple[str, str]]:
    """(trial id, kept best checkpoint) of finished confirm trials with no evaluation yet."""
    rows = fetch_dicts(db_url, _UNEVALUATED_CONFIRM_SQL, _stage(sweep, CONFIRM_STAGE))
    return [(r["trial_id"], r["best_checkpoint"]) for r in rows]


def best_checkpoint(db_url: str, sweep: dict[str, Any]) -> tuple[str, str] | None:
    """(trial id, best checkpoint) of the sweep's best search trial with a checkpoint on record,
    by the sweep's metric and mode; None if no trial has one."""
    sql = _BEST_CHECKPOINT_SQL.format(order=_best_first(sweep["mode"]))
    rows = fetch_dicts(db_url, sql, _stage(sweep))
    return (rows[0]["trial_id"], rows[0]["best_checkpoint"]) if rows else None


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
