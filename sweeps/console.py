"""What reaches the sweep's console: our progress table, and not Ray's notices that mean
nothing to a sweep's user.

``use_progress_table`` switches the driver to Tune's classic output, the only one that honours
``RunConfig(progress_reporter=...)``: Ray 2.60's default "AIR" output engine ignores the reporter
("AIR_VERBOSITY is set, ignoring passed-in ProgressReporter") and prints RLlib's own columns and
every trial's whole config instead.

``quiet_ray_notices`` runs in every Ray worker process of a sweep (``worker_process_setup_hook``
in the runtime env, so it also reaches a cluster's nodes) and in the driver. It drops only
deprecation notices about RLlib's own internals and Tune's "Install gputil" hint: warnings about
the user's configuration and every error still come through.
"""

import logging
import os
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


def quiet_ray_notices() -> None:
    """Install the filters (idempotent)."""
    # platformdirs (via W&B) warns twice where XDG_RUNTIME_DIR is unset, as on most servers.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    for name, text in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) for f in logger.filters):
            logger.addFilter(_DropNotice(text))


def use_progress_table() -> None:
    """Make Tune print the sweep's ``CLIReporter`` table (read by ``Tuner.fit`` in the driver)."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
