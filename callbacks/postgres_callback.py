"""PostgresCallback: the sweep's one writer — its row, trials, iterations and episodes.

It runs on the Tune driver only, so worker nodes need no database access. It must come first in
``RunConfig(callbacks=[...])``: it pops the per-episode list (``result[EPISODES_KEY]``) out of each
result, and in Ray 2.60 every callback and logger sees that same dict, so the list then stays out
of Tune's JSON/CSV/TensorBoard loggers, W&B and the experiment state.

Lifecycle: Tune calls :meth:`setup` when ``fit()`` starts — only then is the sweep row created (or,
for a restored sweep, whose id came back through :meth:`set_state`, reopened), so nothing is
written before Ray is connected and the Tuner is built. :meth:`on_experiment_end` records how the
sweep ended (``finished``, ``failed`` when every trial errored, ``interrupted`` when trials were
left unfinished, e.g. by Ctrl-C), marks unfinished trials ``interrupted``, and waits for buffered
rows.

Tune pickles callbacks into ``tuner.pkl`` when the Tuner is built, so the connection is opened in
:meth:`setup` and no password is ever pickled: a password in ``db_url`` is kept in memory only; a
restored sweep (a new process) gets it from ``PGPASSWORD`` or ``~/.pgpass``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray.tune import Callback

from callbacks.collapse import stop_reason
from callbacks.lineage import drain
from callbacks.records import (
    COLLAPSE_PEAK_KEY,
    CONFIRM_STAGE,
    EPISODES_KEY,
    EVALUATION_KEY,
    SEARCH_STAGE,
    STAGES,
    lookup,
)
from callbacks.store.connection import split_password, validate_db_url
from callbacks.store.store import ResultsStore
from callbacks.store.tables import iteration_row

__all__ = ["NOT_SAVED", "PostgresCallback"]

NOT_SAVED = "(not saved)"
"""The ``checkpoint`` of an in-training evaluation whose iteration Tune saved no checkpoint for
(the sweep ended first): its episodes are still stored."""


@dataclass
class _TrialProgress:
    last_env_steps: int | None = None
    best_metric: float | None = None
    best_checkpoint: str | None = None
    started: bool = False
    ended: bool = False
    """Tune reported the trial complete or errored (an interrupted trial is neither)."""


def _better(new: float | None, old: float | None, mode: str) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    return new > old if mode == "max" else new < old


def tune_best_checkpoint(trial: Any) -> str | None:
    """The path of the checkpoint Tune itself ranks best for ``trial`` (and therefore keeps).

    Tune's ``CheckpointConfig(num_to_keep=K, checkpoint_score_attribute=M)`` scores a checkpoint
    by M in the result that saved it and deletes all but the best K: only its own ranking names a
    checkpoint that is still on disk. Ray 2.60 exposes that ranking during a run only through the
    trial's checkpoint manager (``ResultGrid``'s ``best_checkpoints`` after ``fit()``);
    ``tests/test_postgres_callback.py`` fails if this stops matching what is on disk.
    """
    manager = trial.run_metadata.checkpoint_manager
    best = manager.best_checkpoint_result
    return best.checkpoint.path if best is not None and best.checkpoint else None


class PostgresCallback(Callback):
    """Tune callback that records one sweep: its row, every trial, iteration and episode.

    Args:
        db_url: PostgreSQL URL (see :mod:`callbacks.store.connection`).
        sweep: the sweep row's fields (``name``, ``algo``, ``search_space``, ``metric``,
            ``mode``, and optionally ``scheduler``, ``command``, ``code_version``,
            ``ray_address``): plain data, created when ``fit()`` starts.
        scheduler: the name stored as the stop reason of trials the scheduler stopped.
        param_keys: flattened config keys to store as the trial's params (the searched ones);
            default: the whole config, made JSON-safe.
        num_samples: trials the sweep means to run; fewer at the end means it was interrupted.
        stage: ``search``, or ``confirm`` for the re-runs of ``sweeps.confirm``: those join the
            sweep's existing row, and each trial row names its seed and, through ``repeats``
            (searched params as a tuple in ``param_keys`` order -> search trial id), the trial
            whose config it repeats.
        final_tail_env_steps: an ended trial's ``final_metric`` is the mean metric over its last
            this many env steps (see ``sweeps.stats.FINAL_METRIC``); None: not scored.
        lineage: a PBT sweep: write the exploits its scheduler publishes (``callbacks.lineage``)
            and the collapses its stopper records. A member that copied a donor continues from
            the donor's iteration counter; its rows keep the member's own timeline (stored
            iteration = reported + an offset per trial), so nothing it trained is overwritten.
        imitation: the sweep's BC stage, written with the sweep row: ``demonstrations`` (the
            episodes it cloned) and ``bc_iterations`` rows (``callbacks.store.tables``).
        spill_dir: where rows go while PostgreSQL is unavailable (default: the state dir).
        flush_timeout_s: how long the end of the experiment waits for buffered rows.
    """

    def __init__(
        self,
        *,
        db_url: str,
        sweep: Mapping[str, Any],
        scheduler: str = "asha",
        param_keys: Sequence[str] | None = None,
        num_samples: int | None = None,
        stage: str = SEARCH_STAGE,
        repeats: Mapping[tuple, str] | None = None,
        final_tail_env_steps: int | None = None,
        lineage: bool = False,
        imitation: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        spill_dir: Path | None = None,
        flush_timeout_s: float = 60.0,
    ) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        validate_db_url(db_url)
        if sweep.get("mode") not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {sweep.get('mode')!r}")
        self._db_url, self._password = split_password(db_url)
        self.sweep = dict(sweep)
        self.metric = sweep["metric"]
        self.mode = sweep["mode"]
        self.scheduler = scheduler
        self.param_keys = tuple(param_keys) if param_keys is not None else None
        self.num_samples = num_samples
        self.stage = stage
        self.repeats = dict(repeats or {})
        self.final_tail_env_steps = final_tail_env_steps
        self.lineage = lineage
        self.imitation = dict(imitation or {})
        self._offsets: dict[str, int] = {}
        """Per PBT member, stored minus reported ``training_iteration``: an exploit restores the
        donor's checkpoint, its counter included, and the member's timeline goes on unbroken."""
        self._next_after_exploit: dict[str, int] = {}
        """Per member exploited since its last result: the stored iteration its next result is."""
        self.spill_dir = spill_dir
        self.flush_timeout_s = flush_timeout_s
        self.sweep_id: int | None = None
        self.lost_rows = 0
        self._store: ResultsStore | None = None
        self._trials: dict[str, _TrialProgress] = {}
        self._restarted: set[str] = set()
        self._unsaved_evaluations: dict[str, list[dict[str, Any]]] = {}
        """Per trial, the episodes its last evaluation played (``callbacks.periodic_evaluation``),
        waiting for the checkpoint Tune saves for that iteration: the row names it."""

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the live connection or the password (tuner.pkl is a plain file).
        state = self.__dict__.copy()
        state["_store"] = None
        state["_password"] = None
        state["_unsaved_evaluations"] = {}  # a replayed iteration evaluates again
        return state

    # -- Tune hooks ------------------------------------------------------------------------

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Create the sweep row (reopen it on restore) and open the store."""
        if self._store is not None:
            self._store.close(self.flush_timeout_s)
        self._store = ResultsStore(self._db_url, password=self._password, spill_dir=self.spill_dir)
        resume = self.sweep_id is not None or self.stage == CONFIRM_STAGE
        self.sweep_id = self._store.start_sweep(**self.sweep, resume=resume)
        if self.imitation:
            self._store.write_imitation(**self.imitation)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._restarted.add(trial.trial_id)
        progress = self._progress(trial.trial_id)
        progress.started, progress.ended = True, False
        params = self._params(trial.config)
        self._require_store().upsert_trial(
            trial.trial_id,
            params=params,
            stage=self.stage,
            seed=trial.config.get("seed"),
            repeats=self.repeats.get(tuple(params.values()))
            if self.stage == CONFIRM_STAGE
            else None,
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
        episodes = result.pop(EPISODES_KEY, None) or []
        evaluation = result.pop(EVALUATION_KEY, None) or []
        row = iteration_row(result, metric=self.metric)
        self._shift_after_exploit(trial.trial_id, row["training_iteration"])
        offset = self._offsets.get(trial.trial_id, 0)
        if offset:
            row["training_iteration"] += offset
            episodes, evaluation = (
                [{**e, "training_iteration": (e["training_iteration"] or 0) + offset} for e in rows]
                for rows in (episodes, evaluation)
            )
        if evaluation:
            self._unsaved_evaluations[trial.trial_id] = evaluation
        progress = self._progress(trial.trial_id)
        if _better(row["metric"], progress.best_metric, self.mode):
            progress.best_metric = row["metric"]
        if row["env_steps_lifetime"] is not None:
            progress.last_env_steps = row["env_steps_lifetime"]

        store = self._require_store()
        if trial.trial_id in self._restarted:
            # First result since (re)start: a trial restored from an older checkpoint (or
            # restarted from scratch) replays iterations whose rows an earlier run wrote.
            self._restarted.discard(trial.trial_id)
            store.rewind_trial(trial.trial_id, row["training_iteration"])
        self._note_best_checkpoint(trial)
        store.upsert_trial(
            trial.trial_id,
            last_env_steps=progress.last_env_steps,
            best_metric=progress.best_metric,
            best_checkpoint=progress.best_checkpoint,
            node_ip=row["node_ip"],
        )
        store.write_iteration(trial.trial_id, row)
        store.write_episodes(trial.trial_id, episodes)
        if self.lineage:
            if result.get(COLLAPSE_PEAK_KEY) is not None:
                store.write_lineage(
                    trial.trial_id,
                    {
                        "training_iteration": row["training_iteration"],
                        "kind": "collapse",
                        "env_steps": row["env_steps_lifetime"],
                        "metric": row["metric"],
                        "peak": result[COLLAPSE_PEAK_KEY],
                        "old_params": self._params(trial.config),
                    },
                )
            self._write_exploits()

    def _write_exploits(self) -> None:
        """Store the exploits published since the last call; each member's next result is
        numbered on from the one that was replaced (``_shift_after_exploit``).

        Called after each result: Tune runs the scheduler (which exploits only the trial that
        reported) before the callbacks, so that result's events are here already."""
        for event in drain(self.sweep["name"]):
            trial_id = event["trial_id"]
            stored = event["training_iteration"] + self._offsets.get(trial_id, 0)
            self._next_after_exploit[trial_id] = stored + 1
            row = {key: value for key, value in event.items() if key != "trial_id"}
            self._require_store().write_lineage(
                trial_id, {**row, "training_iteration": stored, "kind": "exploit"}
            )

    def _shift_after_exploit(self, trial_id: str, reported: int) -> None:
        """Number a member's first result after an exploit next in its own timeline.

        The counter it reports is the one of the checkpoint it was restored from (RLlib's
        ``set_state``). The donor's last result that PBT scored need not name that iteration, and
        a shift taken from it once left a gap in a member's stored iterations; so the shift is
        taken from the member's own result."""
        expected = self._next_after_exploit.pop(trial_id, None)
        if expected is not None:
            self._offsets[trial_id] = expected - reported

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """Store the evaluation played in the iteration this checkpoint saved."""
        self._write_evaluation(trial.trial_id, checkpoint.path)

    def _write_evaluation(self, trial_id: str, checkpoint: str) -> None:
        rows = self._unsaved_evaluations.pop(trial_id, [])
        if rows:
            self._require_store().write_evaluations(
                trial_id, [{**row, "checkpoint": checkpoint} for row in rows]
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune calls this while the trial still says RUNNING; its last result says why it ended.
        reason = stop_reason(trial.last_result, scheduler=self.scheduler)
        self._progress(trial.trial_id).ended = True
        self._finish(trial, status="terminated", stop_reason=reason, error=None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._progress(trial.trial_id).ended = True
        self._finish(trial, status="error", stop_reason="error", error=_error_text(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Record how the sweep ended, wait for buffered rows (up to ``flush_timeout_s``)."""
        if self._store is None:
            return
        for trial_id in list(self._unsaved_evaluations):  # played, but Tune saved nothing after
            self._write_evaluation(trial_id, NOT_SAVED)
        # Tune stops the actors of an interrupted sweep without on_trial_complete (their status
        # may even read TERMINATED): a trial is finished only if Tune said so through a hook.
        unfinished = [t for t in trials if not self._progress(t.trial_id).ended]
        for trial in unfinished:
            if self._progress(trial.trial_id).started:  # a PENDING one never got a row
                self._finish(trial, status="interrupted", stop_reason="interrupted", error=None)
        errored = sum(str(t.status) == "ERROR" for t in trials)
        if unfinished or (self.num_samples is not None and len(trials) < self.num_samples):
            status = "interrupted"
        elif trials and errored == len(trials):
            status = "failed"
        else:
            status = "finished"
        self._store.finish_sweep(status)
        self._store.close(self.flush_timeout_s)
        self.lost_rows = self._store.lost_rows
        self._store = None

    def get_state(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id,
            "trials": {trial_id: asdict(p) for trial_id, p in self._trials.items()},
            "offsets": dict(self._offsets),
            "next_after_exploit": dict(self._next_after_exploit),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.sweep_id = state.get("sweep_id")
        self._offsets = dict(state.get("offsets", {}))
        self._next_after_exploit = dict(state.get("next_after_exploit", {}))
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

    def _note_best_checkpoint(self, trial: Any) -> None:
        if getattr(trial, "run_metadata", None) is not None:
            self._progress(trial.trial_id).best_checkpoint = tune_best_checkpoint(trial)

    def _finish(self, trial: Any, *, status: str, stop_reason: str, error: str | None) -> None:
        self._note_best_checkpoint(trial)
        progress = self._progress(trial.trial_id)
        store = self._require_store()
        store.upsert_trial(
            trial.trial_id,
            status=status,
            stop_reason=stop_reason,
            error=error,
            best_metric=progress.best_metric,
            best_checkpoint=progress.best_checkpoint,
            last_env_steps=progress.last_env_steps,
            finished_at=datetime.now(UTC),
        )
        if self.final_tail_env_steps is not None:
            store.score_trial(trial.trial_id, self.final_tail_env_steps)


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
