"""What env runners, the trial actor and the driver agree on: result keys and the episode record.

This module imports nothing but the standard library, because every env runner on every node
imports it: the episode recorder builds records here, the driver's store writes them unchanged.

An episode's journey: ``MarioEnv.step`` puts the facts of :data:`EPISODE_FACT_COLUMNS` into every
``info`` (already plain Python values); :class:`~callbacks.episode_recorder.EpisodeRecorder` adds
who played it (:func:`episode_record`); the record travels in the training result under
:data:`EPISODES_KEY`; ``PostgresCallback`` pops it and the store inserts it as one ``episodes``
row, whose columns are :data:`EPISODE_COLUMNS`, the record's own fields.

>>> lookup({"mario": {"x_pos_smoothed": 3.5}}, "mario/x_pos_smoothed")
3.5
>>> lookup({"mario/x_pos_smoothed": 3.5}, "mario/x_pos_smoothed")
3.5
"""

from collections.abc import Mapping
from typing import Any, TypedDict

__all__ = [
    "COLLAPSE_PEAK_KEY",
    "ENV_STEPS_KEY",
    "EPISODES_KEY",
    "EPISODE_COLUMNS",
    "EPISODE_FACT_COLUMNS",
    "EVALUATION_KEY",
    "EVAL_CHECKPOINT_SCORE",
    "METRIC_PREFIX",
    "STOP_REASON_KEY",
    "CONFIRM_STAGE",
    "SEARCH_STAGE",
    "STAGES",
    "STOP_REASONS",
    "EpisodeRecord",
    "episode_ending",
    "episode_record",
    "eval_key",
    "evaluation_row",
    "lookup",
    "metric_key",
]

ENV_STEPS_KEY = "num_env_steps_sampled_lifetime"
"""RLlib's ``NUM_ENV_STEPS_SAMPLED_LIFETIME`` (a test checks they agree), spelled here so that
the store and the commands that only read it need not import RLlib (seconds per process)."""

EPISODES_KEY = "mario_episodes"
"""Where the iteration's finished episodes travel in a training result (popped on the driver)."""

METRIC_PREFIX = "mario/"
"""Our per-iteration metrics are flat top-level result keys ``mario/<name>``: Tune's checkpoint
scoring looks its ``checkpoint_score_attribute`` up among the result's *top-level* keys, so a
nested ``{"mario": {...}}`` silently scored every checkpoint alike and kept the newest ones."""

EVALUATION_KEY = "mario_evaluation"
"""Where a trial's in-training evaluation (``callbacks.periodic_evaluation``) sends the episodes
it played, in the result of the iteration it evaluated (popped on the driver, stored with the
checkpoint Tune saves for that iteration)."""

EVAL_PREFIX = "eval/"
"""In-training evaluation metrics: ``eval/flag_rate``, ``eval/x_pos`` (the last evaluation's,
carried forward: Tune wants a sweep metric in every result) and ``eval/env_steps`` (when)."""

EVAL_CHECKPOINT_SCORE = "eval/checkpoint_score"
"""The checkpoint score of an evaluated iteration (flag rate, then x_pos as the tie-break);
NaN in the others, which Tune ranks last, so the kept best checkpoint is one that was played."""

COLLAPSE_PEAK_KEY = "collapse_peak"
"""Written into a result by ``SweepStopper`` when it records (rather than stops) a collapse, as
under PBT, where a collapsing member is left for exploit to replace: the peak it fell from."""

STOP_REASON_KEY = "stop_reason"
"""Written into the result that ends a trial by whoever stopped it (the sweep's stopper)."""

SEARCH_STAGE, CONFIRM_STAGE = STAGES = ("search", "confirm")
"""Which stage ran a trial: the ``search`` (Optuna + ASHA, or a PBT/PB2 population), or the
``confirm`` stage that re-runs the best search configs over fresh seeds (``sweeps.confirm``)."""

STOP_REASONS = ("completed", "collapse", "asha", "pbt", "error", "interrupted")
"""``completed``: budget used; ``collapse``: the collapse detector; ``asha``/``pbt``: the
scheduler; ``error``: the trial failed; ``interrupted``: the sweep was stopped (Ctrl-C)."""


def evaluation_row(played: Any, protocol: Any, **more: Any) -> dict[str, Any]:
    """An ``evaluations`` row of one played episode (an ``algos.evaluate.EpisodeResult`` under
    a ``Protocol``); ``more``: its checkpoint, video, and when it was played during training."""
    return {
        "policy": "sample" if protocol.sample else "greedy",
        "episode": played.episode,
        "task_id": played.task_id,
        "episode_return": played.total_return,
        "x_pos": played.x_pos,
        "flag_get": played.flag_get,
        "length": played.length,
        "protocol": protocol.describe(),
        **more,
    }


def eval_key(name: str) -> str:
    """The flat result key of an in-training evaluation figure, e.g. ``eval/flag_rate``."""
    return EVAL_PREFIX + name


def metric_key(name: str) -> str:
    """The flat result key of one of our metrics, e.g. ``mario/x_pos_smoothed``."""
    return METRIC_PREFIX + name


class EpisodeRecord(TypedDict):
    """One finished training episode; its fields are the ``episodes`` table's columns."""

    episode_id: str
    training_iteration: int | None
    env_runner: int
    env_index: int
    episode_return: float
    length: int
    x_pos: int | None
    x_pos_max: int | None
    flag_get: bool
    score: int | None
    coins: int | None
    time_left: int | None
    world: int | None
    stage: int | None
    life: int | None
    status: str | None
    game: str | None
    task_id: str | None


EPISODE_COLUMNS: tuple[str, ...] = tuple(EpisodeRecord.__annotations__)
_WHO = ("episode_id", "training_iteration", "env_runner", "env_index", "episode_return", "length")
EPISODE_FACT_COLUMNS: tuple[str, ...] = tuple(c for c in EPISODE_COLUMNS if c not in _WHO)
"""The columns taken as they are from the env's ``info`` (``MarioEnv`` names them so)."""


def episode_record(
    *, episode_id: str, env_runner: int, env_index: int, ret: float, length: int, info: Mapping
) -> EpisodeRecord:
    """The record of one episode from its terminal ``info`` and who played it.

    ``training_iteration`` is filled in by the trial actor when the iteration's result is built.
    """
    record = {
        "episode_id": episode_id,
        "training_iteration": None,
        "env_runner": int(env_runner),
        "env_index": int(env_index),
        "episode_return": float(ret),
        "length": int(length),
    }
    record.update({column: _plain(info.get(column)) for column in EPISODE_FACT_COLUMNS})
    record["flag_get"] = bool(record["flag_get"])
    return record  # type: ignore[return-value]


def episode_ending(
    *, flag_get: bool, time_left: int | None, length: int, max_episode_steps: int | None
) -> str:
    """How an episode ended: ``flag``; ``time-out`` when the game clock ran out or the env's step
    cap (``max_episode_steps``) cut it; else ``death``. The one definition: the report's SQL
    (``sweeps.queries``) says the same, and ``tests/test_report.py`` checks they agree.

    >>> episode_ending(flag_get=False, time_left=250, length=4500, max_episode_steps=4500)
    'time-out'
    """
    if flag_get:
        return "flag"
    if time_left == 0 or (max_episode_steps is not None and length >= max_episode_steps):
        return "time-out"
    return "death"


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars: RLlib hands back episode infos as numpy values."""
    return value.item() if hasattr(value, "item") else value


def lookup(result: Mapping[str, Any], key: str) -> Any:
    """The value of a flattened Tune key (``"a/b/c"``) in a nested or already-flat dict."""
    if key in result:
        return result[key]
    value: Any = result
    for part in key.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
