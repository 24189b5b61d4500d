"""What reaches the sweep's console: our progress table, and not Ray's notices that mean
nothing to a sweep's user.

``use_progress_table`` switches the driver to Tune's classic output, the only one that honours
``RunConfig(progress_reporter=...)``: Ray 2.60's default "AIR" output engine ignores the reporter
("AIR_VERBOSITY is set, ignoring passed-in ProgressReporter") and prints RLlib's own columns and
every trial's whole config instead.

``quiet_ray_notices`` runs in every Ray worker process of a sweep (``worker_process_setup_hook``
in the runtime env, so it also reaches a cluster's nodes) and in the driver. It drops only
deprecation notices about RLlib's own internals, RLlib's "new API stack" notice, Tune's "Install
gputil" hint, one known-harmless core-worker line per actor and the "Exception ignored" traceback
of a worker told to exit while in a finalizer: warnings about the user's configuration and every
error still come through.
"""

import logging
import os
import re
import sys
import warnings

__all__ = ["QUIET_LOGGERS", "quiet_ray_notices", "use_progress_table"]

QUIET_LOGGERS = {
    "ray._common.deprecation": "DeprecationWarning",
    "ray.tune.utils.util": "Install gputil",
    # Once per trial: the new API stack is the only one our builders use.
    "ray.rllib.algorithms.algorithm_config": "on the new API stack",
}
"""Logger name -> text of the only records dropped from it."""


class _DropNotice(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


WORKER_LINES_DROPPED = (
    # Once per env runner: RLlib's actors restart on failure and their config is passed by
    # reference; the restart works (tests/test_faults.py kills one). ray#53727.
    r"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the object store",
)
"""Lines of worker output never printed on the driver's console (they stay in the workers' log
files under the Ray session directory)."""


def _drop_worker_lines() -> None:
    """Ray's driver prints workers' stdout/stderr through its log deduplicators, whose skip
    pattern is read from ``RAY_DEDUP_LOGS_SKIP_REGEX`` once at import; set it on them instead of
    in the environment. Private API; guard: ``tests/test_sweeps.py``'s console test."""
    from ray._private import ray_logging

    pattern = re.compile("|".join(WORKER_LINES_DROPPED))
    for deduplicator in (ray_logging.stdout_deduplicator, ray_logging.stderr_deduplicator):
        deduplicator.skip_re = pattern


def quiet_ray_notices() -> None:
    """Install the filters (idempotent)."""
    _drop_worker_lines()
    sys.unraisablehook = _exit_in_a_finalizer_is_not_an_error
    # platformdirs (via W&B) warns twice where XDG_RUNTIME_DIR is unset, as on most servers.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    for name, text in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) for f in logger.filters):
            logger.addFilter(_DropNotice(text))


def _exit_in_a_finalizer_is_not_an_error(unraisable) -> None:
    """Ray ends a worker it no longer needs (a stopped trial's env runner) with SIGTERM, whose
    handler raises ``SystemExit``; raised inside a ``__del__``, Python prints it as "Exception
    ignored" with a traceback. The worker exits as asked: every other unraisable still prints."""
    if not isinstance(unraisable.exc_value, SystemExit):
        sys.__unraisablehook__(unraisable)


def use_progress_table() -> None:
    """Make Tune print the sweep's ``CLIReporter`` table (read by ``Tuner.fit`` in the driver)."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
