"""W&B logging for sweeps: Ray's ``WandbLoggerCallback`` with five fixes.

- Memory. Ray's callback hands each trial's config to a logging actor and every result to a
  queue actor. An RLlib config holds classes and str-enums, and a result carries that config,
  so unpickling either imports torch and RLlib: two extra ~450 MiB processes per trial (measured
  with ``benchmarks/sweep_memory.py``). Here the config reaches W&B as builtins, and results
  travel without ``config`` and the episode list.
- Complete offline runs. Tune syncs the experiment to storage for the last time *before* it lets
  this callback wait for the logging actors to finish, so the W&B files under the storage path
  could miss their last records. Once they finish, the W&B folders are copied again.
- One Ctrl-C stops. Ray's callback ends a trial's logging actor only from ``on_trial_complete`` /
  ``on_trial_error``; an interrupted sweep's trials get neither, and ``on_experiment_end`` then
  waited ``upload_timeout`` (1,800 s) for actors that were never told to stop. Here every trial
  still logging is told to end first, and the wait is bounded.
- A quiet console. W&B's own summary, sync hint (naming Ray's temporary session directory) and
  ``reinit`` deprecation stay out of it, and its service is shut down with the run rather than
  at process exit (``_LoggingActor``); the logging actors are not restartable (Ray's core worker
  logs an error line for a restartable actor built from an actor handle).
- No process-wide ``WANDB_MODE``. Ray skips its API-key check only when the driver's environment
  says offline/disabled; here ``mode="offline"``/``"disabled"`` skips it without touching
  ``os.environ``.
"""

import contextlib
import os
from pathlib import Path

import pyarrow.fs
import ray
from ray.air.integrations.wandb import WANDB_ENV_VAR, WandbLoggerCallback, _WandbLoggingActor
from ray.air.util.node import _force_on_current_node

from callbacks.records import EPISODES_KEY
from callbacks.store.tables import json_safe

__all__ = ["MarioWandbLoggerCallback"]

RESULT_KEYS_KEPT_OUT = ("config", EPISODES_KEY)


def _wandb_env() -> dict[str, str]:
    """The API key for the logging actors, as Ray passes it (absent after ``wandb login``)."""
    return {WANDB_ENV_VAR: os.environ[WANDB_ENV_VAR]} if WANDB_ENV_VAR in os.environ else {}


class _LoggingActor(_WandbLoggingActor):
    """Ray's logging actor, which also shuts W&B's service down when its run is finished: left
    to ``atexit`` the teardown runs after Ray has ended the process's connections and prints a
    ``ConnectionResetError`` traceback at the end of every trial."""

    def run(self):
        super().run()
        self._wandb.teardown()


class MarioWandbLoggerCallback(WandbLoggerCallback):
    """One W&B run per trial, as Ray's callback, without torch in its helper actors."""

    _logger_actor_cls = _LoggingActor

    UPLOAD_TIMEOUT_S = 120
    """How long the experiment's end waits for logging actors (offline runs finish in seconds)."""

    def __init__(self, *, project: str, group: str, mode: str, **kwargs):
        kwargs.setdefault("upload_timeout", self.UPLOAD_TIMEOUT_S)
        # Ray passes reinit=True, which W&B 0.19+ warns about in every trial; and a logging
        # actor's own summary and "wandb sync" hint (naming Ray's temporary session directory)
        # would reach the console: the runner prints the hint for the storage path instead.
        kwargs.setdefault("reinit", "finish_previous")
        kwargs.setdefault("settings", {"silent": True})
        super().__init__(project=project, group=group, mode=mode, **kwargs)
        self._ended: set[str] = set()

    def setup(self, *args, **kwargs):
        if self.kwargs.get("mode") in ("offline", "disabled"):
            return  # nothing to authenticate; project and group are given
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial):
        self._ended.discard(trial.trial_id)  # a restarted trial logs again
        super().log_trial_start(trial)

    def log_trial_end(self, trial, failed: bool = False):
        self._ended.add(trial.trial_id)
        super().log_trial_end(trial, failed=failed)

    def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
        wandb_init_kwargs["config"] = json_safe(wandb_init_kwargs.get("config") or {})
        if not self._remote_logger_class:
            # Ray's own is restartable (max_restarts=-1), but a restart cannot be promised for
            # an actor built from a handle (the queue's), which Ray holds in the object store
            # (ray #53727): its core worker logs an "E" line per sweep saying so. Not restarted,
            # a logging actor that dies ends its trial's W&B run, as a failed restart would.
            self._remote_logger_class = ray.remote(
                num_cpus=0,
                **_force_on_current_node(),
                runtime_env={"env_vars": _wandb_env()},
            )(self._logger_actor_cls)
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

    def log_trial_result(self, iteration: int, trial, result: dict):
        kept = {key: value for key, value in result.items() if key not in RESULT_KEYS_KEPT_OUT}
        super().log_trial_result(iteration, trial, kept)

    def __del__(self):
        # Ray's __del__ calls ray.is_initialized(), which fails once the interpreter has torn
        # the module down; our on_experiment_end has cleaned up the actors by then anyway.
        with contextlib.suppress(AttributeError, TypeError):
            super().__del__()

    def on_experiment_end(self, trials, **info):
        for trial in list(self._trial_logging_actors):
            if trial.trial_id not in self._ended:  # interrupted: never completed nor errored
                self.log_trial_end(trial, failed=False)
        super().on_experiment_end(trials, **info)  # waits for every logging actor to finish
        for trial in trials:
            local = Path(trial.local_path) / "wandb"
            if local.is_dir() and trial.local_path != trial.path:
                pyarrow.fs.copy_files(
                    str(local),
                    f"{trial.path}/wandb",
                    destination_filesystem=trial.storage.storage_filesystem,
                )
