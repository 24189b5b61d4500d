"""The sweep's HTML report, rewritten every few minutes while Tune runs: a reload is monitoring.

A daemon thread of the driver reads the database (the source of truth; the report never touches
Tune's files or actors) and rewrites the report atomically, so a browser never sees half a page.
The Tune loop is never blocked by it; a failing refresh is logged once and tried again later.
"""

import logging
import threading
from pathlib import Path

from sweeps.report import write_report

__all__ = ["LiveReport"]

logger = logging.getLogger(__name__)


class LiveReport:
    """``with LiveReport(db_url, name, out_dir, every_s=300): tuner.fit()``; ``every_s=0``: off."""

    def __init__(self, db_url: str, name: str, out_dir: Path, *, every_s: float):
        self.db_url, self.name, self.out_dir, self.every_s = db_url, name, out_dir, every_s
        self.refreshes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-report", daemon=True)
        self._warned = False

    def __enter__(self) -> "LiveReport":
        if self.every_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                write_report(self.db_url, self.name, self.out_dir)
                self.refreshes += 1
            except Exception as exc:  # a report must never stop a sweep; say it once
                if not self._warned:
                    self._warned = True
                    logger.warning("could not refresh the sweep report: %s", exc)
