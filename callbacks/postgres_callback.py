"""PostgresCallback: writes a Tune sweep's trials, iterations and episodes to the results store.

It runs on the Tune driver only, so worker nodes need no database access. It must come first in
``RunConfig(callbacks=[...])``: it pops the per-episode list (``result["mario_episodes"]``) out of
each result, and in Ray 2.60 every callback and logger sees that same dict, so the list then stays
out of Tune's JSON/CSV/TensorBoard loggers, W&B and the experiment state.

Tune pickles callbacks into ``tuner.pkl`` when the Tuner is built, so the connection is opened in
:meth:`PostgresCallback.setup` and no password is ever pickled: a password in ``db_url`` is kept in
memory only; a restored sweep (a new process) gets it from ``PGPASSWORD`` or ``~/.pgpass``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ray.tune import Callback

from callbacks.store.rows import EPISODES_KEY, iteration_row, lookup, normalize_episodes
from callbacks.store.urls import split_password, validate_db_url
from callbacks.store.writer import ResultsStore

__all__ = ["PostgresCallback", "StopReasonSource"]


class StopReasonSource(Protocol):
    """A stopper that can say why it stopped a trial (e.g. ``"collapse"``), or None."""

    def stop_reason(self, trial_id: str) -> str | None: ...


@dataclass
class _TrialProgress:
    last_env_steps: int | None = None
    last_metric: float | None = None
    best_metric: float | None = None
    best_checkpoint: str | None = None
    best_checkpoint_metric: float | None = None


def _better(new: float | None, old: float | None, mode: str) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    return new > old if mode == "max" else new < old


class PostgresCallback(Callback):
    """Tune callback that records every trial, iteration and episode of one sweep.

    Args:
        db_url: PostgreSQL URL (see :mod:`callbacks.store.urls`).
        sweep_id: the id returned by :meth:`ResultsStore.start_sweep`.
        metric: the sweep's flattened metric key, e.g. ``"mario/return_smoothed"``.
        mode: ``"max"`` or ``"min"``; decides the best metric and best checkpoint.
        max_env_steps: the trial budget; a trial that reached it stopped as ``"completed"``,
            one that ended earlier without another reason was stopped by ASHA (``"asha"``).
        stopper: the same stopper object given to ``RunConfig(stop=...)``; if it has
            ``stop_reason(trial_id)`` returning a string, that is the trial's stop reason.
        param_keys: flattened config keys to store as the trial's params (the searched ones);
            default: the whole config, made JSON-safe.
        spill_dir: where rows go while PostgreSQL is unavailable (default: the state dir).
        flush_timeout_s: how long the end of the experiment waits for buffered rows.
    """

    def __init__(
        self,
        *,
        db_url: str,
        sweep_id: int,
        metric: str,
        mode: str,
        max_env_steps: int,
        stopper: StopReasonSource | None = None,
        param_keys: Sequence[str] | None = None,
        spill_dir: Path | None = None,
        flush_timeout_s: float = 60.0,
    ) -> None:
        validate_db_url(db_url)
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self._db_url, self._password = split_password(db_url)
        self.sweep_id = sweep_id
        self.metric = metric
        self.mode = mode
        self.max_env_steps = max_env_steps
        self.stopper = stopper
        self.param_keys = tuple(param_keys) if param_keys is not None else None
        self.spill_dir = spill_dir
        self.flush_timeout_s = flush_timeout_s
        self._store: ResultsStore | None = None
        self._trials: dict[str, _TrialProgress] = {}
        self._restarted: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the live connection or the password (tuner.pkl is a plain file).
        state = self.__dict__.copy()
        state["_store"] = None
        state["_password"] = None
        return state

    # -- Tune hooks ------------------------------------------------------------------------

    def setup(self, **info: Any) -> None:
        """Open the store; a password not in memory comes from PGPASSWORD / ~/.pgpass."""
        if self._store is not None:
            self._store.close(self.flush_timeout_s)
        self._store = ResultsStore(
            self._db_url,
            sweep_id=self.sweep_id,
            password=self._password,
            spill_dir=self.spill_dir,
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._restarted.add(trial.trial_id)
        self._require_store().upsert_trial(
            trial.trial_id,
            params=self._params(trial.config),
            status="running",
            stop_reason=None,
            error=None,
            started_at=datetime.now(UTC),
            finished_at=None,
        )

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._restarted.add(trial.trial_id)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Pop the episode list out of ``result`` and write the iteration and its episodes."""
        raw_episodes = result.pop(EPISODES_KEY, None)
        episodes = None if raw_episodes is None else normalize_episodes(raw_episodes)
        row = iteration_row(result, episodes, metric=self.metric)
        progress = self._progress(trial.trial_id)
        progress.last_metric = row["metric"]
        if _better(row["metric"], progress.best_metric, self.mode):
            progress.best_metric = row["metric"]
        if row["env_steps_lifetime"] is not None:
            progress.last_env_steps = row["env_steps_lifetime"]

        store = self._require_store()
        if trial.trial_id in self._restarted and row["training_iteration"] is not None:
            # First result since (re)start: a trial restored from an older checkpoint (or
            # restarted from scratch) replays iterations whose rows an earlier run wrote.
            self._restarted.discard(trial.trial_id)
            store.rewind_trial(trial.trial_id, row["training_iteration"])
        store.upsert_trial(
            trial.trial_id,
            last_env_steps=progress.last_env_steps,
            best_metric=progress.best_metric,
            node_ip=row["node_ip"],
        )
        store.write_iteration(trial.trial_id, row)
        store.write_episodes(trial.trial_id, row["training_iteration"], episodes or [])

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """Keep the checkpoint if the metric when it was saved is the trial's best so far.

        Tune saves after processing the result of the same iteration, so the last metric seen is
        the checkpoint's. A checkpoint saved before any metric is kept until a scored one comes.
        """
        progress = self._progress(trial.trial_id)
        metric = progress.last_metric
        if progress.best_checkpoint is None or _better(
            metric, progress.best_checkpoint_metric, self.mode
        ):
            progress.best_checkpoint = checkpoint.path
            progress.best_checkpoint_metric = metric
            self._require_store().upsert_trial(trial.trial_id, best_checkpoint=checkpoint.path)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune calls this while the trial still says RUNNING, so the reason is ours to work out.
        self._finish(trial, status="terminated", stop_reason=self._stop_reason(trial), error=None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, status="error", stop_reason="error", error=_error_text(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Wait for buffered rows (up to ``flush_timeout_s``) and close the connection."""
        if self._store is not None:
            self._store.close(self.flush_timeout_s)
            self._store = None

    def get_state(self) -> dict[str, Any]:
        return {"trials": {trial_id: asdict(p) for trial_id, p in self._trials.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        self._trials = {
            trial_id: _TrialProgress(**fields) for trial_id, fields in state["trials"].items()
        }

    # -- helpers ---------------------------------------------------------------------------

    def _require_store(self) -> ResultsStore:
        if self._store is None:
            raise RuntimeError("PostgresCallback.setup() has not run (Tune calls it first)")
        return self._store

    def _progress(self, trial_id: str) -> _TrialProgress:
        return self._trials.setdefault(trial_id, _TrialProgress())

    def _params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        if self.param_keys is None:
            return dict(config)
        return {key: lookup(config, key) for key in self.param_keys}

    def _stop_reason(self, trial: Any) -> str:
        if self.stopper is not None:
            reason = self.stopper.stop_reason(trial.trial_id)
            if reason:
                return reason
        steps = self._progress(trial.trial_id).last_env_steps
        if steps is not None and steps >= self.max_env_steps:
            return "completed"
        return "asha"

    def _finish(self, trial: Any, *, status: str, stop_reason: str, error: str | None) -> None:
        progress = self._progress(trial.trial_id)
        self._require_store().upsert_trial(
            trial.trial_id,
            status=status,
            stop_reason=stop_reason,
            error=error,
            best_metric=progress.best_metric,
            best_checkpoint=progress.best_checkpoint,
            last_env_steps=progress.last_env_steps,
            finished_at=datetime.now(UTC),
        )


def _error_text(trial: Any) -> str:
    """The trial's traceback from its error file, else Tune's error object, else a placeholder."""
    path = getattr(trial, "error_file", None)
    if path:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    error = trial.get_error() if hasattr(trial, "get_error") else None
    return str(error) if error is not None else "the trial failed without an error file"
