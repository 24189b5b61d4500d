"""Optuna as Tune's searcher, with its study in our PostgreSQL, and ASHA as the scheduler.

Two Optuna/Tune seams need care (see shared/FIELD-NOTES.md):

- ASHA-stopped trials would be told COMPLETE with their value at the stopping rung, mixing short-
  and full-budget values in TPE's model. ``MarioOptunaSearch`` tells them PRUNED instead; trials
  that finished their budget or collapsed (their stop reason, see ``callbacks.collapse``) are
  COMPLETE with their final value. An errored trial, or one whose value is NaN, is FAIL.
- Known-good starting points are enqueued into the study once (``skip_if_exists``), not passed as
  ``points_to_evaluate``, which Tune re-enqueues on every restore.

The searcher is pickled into ``tuner.pkl``; ``PasswordFreeRDBStorage`` keeps a URL password out of
that pickle (a restored sweep gets it from ``PGPASSWORD`` or ``~/.pgpass``, as libpq does).
"""

import math

import optuna
from optuna.storages import RDBStorage
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from callbacks.collapse import stop_reason
from callbacks.store import remembered_password, split_password, sqlalchemy_url

__all__ = [
    "MarioASHA",
    "MarioOptunaSearch",
    "PasswordFreeRDBStorage",
    "asha_scheduler",
    "optuna_searcher",
]

COMPLETE_REASONS = ("completed", "collapse")
"""Trials that ran their course (a collapse is a bad outcome TPE should learn from)."""


class PasswordFreeRDBStorage(RDBStorage):
    """Optuna's RDB storage whose pickled state never holds a database password."""

    def __init__(self, url: str):
        bare, password = split_password(url)
        connect_args = {"password": password} if password else {}
        super().__init__(
            sqlalchemy_url(bare),
            engine_kwargs={"pool_pre_ping": True, "connect_args": connect_args},
        )

    def __setstate__(self, state):
        # Unpickled from tuner.pkl on --resume: the password given again, if any, is remembered.
        password = remembered_password(state["url"])
        if password:
            kwargs = state["engine_kwargs"]
            state = {**state, "engine_kwargs": {**kwargs, "connect_args": {"password": password}}}
        super().__setstate__(state)

    def __getstate__(self):
        # Optuna's private state layout (optuna pinned < 6); guard: tests/test_decisions.py.
        state = super().__getstate__()
        state["engine_kwargs"] = {**state["engine_kwargs"], "connect_args": {}}
        return state


class MarioOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells scheduler stops PRUNED and never leaves a trial RUNNING.

    Only OptunaSearch's public hooks are used: it already reports every result as an intermediate
    value and tells PRUNED when the final result lacks the metric, FAIL on error.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        value = None if result is None else result.get(self.metric)
        if (
            result is None  # (then value is None too)
            or error
            or value is None
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            # A NaN told as COMPLETE raises inside Optuna and left the trial RUNNING forever.
            super().on_trial_complete(trial_id, None, error=True)
        elif stop_reason(result) in COMPLETE_REASONS:
            super().on_trial_complete(trial_id, result)
        else:
            pruned = {k: v for k, v in result.items() if k != self.metric}
            super().on_trial_complete(trial_id, pruned)


def optuna_searcher(
    *,
    db_url: str,
    study_name: str,
    metric: str,
    mode: str,
    seed: int,
    points_to_evaluate: list[dict],
) -> MarioOptunaSearch:
    """A seeded TPE searcher over the Tuner's param space, its study stored in PostgreSQL."""
    storage = PasswordFreeRDBStorage(db_url)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize" if mode == "max" else "minimize",
        load_if_exists=True,
    )
    for point in points_to_evaluate:
        study.enqueue_trial(point, skip_if_exists=True)
    return MarioOptunaSearch(
        metric=metric,
        mode=mode,
        sampler=optuna.samplers.TPESampler(seed=seed),
        study_name=study_name,
        storage=storage,
    )


class MarioASHA(ASHAScheduler):
    """ASHA whose rung records can be saved and restored (``callbacks.decisions``), so a resumed
    sweep does not judge a trial twice at one rung.

    Tune's ``_Bracket._rungs`` (a list of ``(milestone, {trial_id: value})``) is private; the
    guard is ``tests/test_decisions.py``.
    """

    def get_state(self) -> list[list[dict]]:
        return [[dict(recorded) for _, recorded in b._rungs] for b in self._brackets]

    def set_state(self, state: list[list[dict]]) -> None:
        for bracket, rungs in zip(self._brackets, state, strict=True):
            for (_, recorded), saved in zip(bracket._rungs, rungs, strict=True):
                recorded.clear()
                recorded.update(saved)


def asha_scheduler(
    *, metric: str, mode: str, max_env_steps: int, grace_period: int, reduction_factor: int
) -> MarioASHA:
    """ASHA on lifetime env steps (RLlib reports no ``timesteps_total``)."""
    return MarioASHA(
        time_attr=NUM_ENV_STEPS_SAMPLED_LIFETIME,
        metric=metric,
        mode=mode,
        max_t=max_env_steps,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )
