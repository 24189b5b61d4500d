"""``Outbox``: store-and-forward for result rows, so that the database never stops training.

Writes are *ops* (``{"kind": "episodes", "rows": [...]}``) handed to a ``send`` function that
writes a list of ops in one transaction. When ``send`` raises :class:`StoreUnavailable`, the ops
stay in memory in their order, one warning is logged, and they are retried on a later submit once
the retry delay has passed (``retry_interval_s``, doubling after each failed attempt up to two
minutes, so an unreachable host costs the caller at most one connect timeout per delay) or on
:meth:`Outbox.flush`. Beyond ``max_buffer_rows`` the memory buffer is appended to the spill file
(JSONL, see :data:`SPILL_FORMAT`), which is replayed first the next time anything is sent, also by
a later process (a resumed sweep). Ops the database refuses outright (:class:`StoreError`: a bug,
not an outage) are retried one by one and the refused ones go to the rejected file.

Nothing is dropped silently: if the spill file cannot be written (disk full, directory gone), the
rows stay in memory up to ten times ``max_buffer_rows``; past that the oldest are dropped, and
every row that could not be kept is counted in :attr:`Outbox.lost_rows` and logged once, loudly.

Knows nothing about PostgreSQL; not thread-safe (Tune calls its callbacks from one thread).
"""

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from callbacks.store.errors import StoreError, StoreUnavailable

__all__ = ["SPILL_FORMAT", "Op", "Outbox", "SpillFormatError"]

logger = logging.getLogger(__name__)

Op = dict[str, Any]
"""``{"kind": <a key of callbacks.store.tables.WRITERS>, "rows": [row, ...]}``."""

SPILL_FORMAT = {"format": "mario-sweeps-outbox", "version": 1}
"""The first line of every spill and rejected file; the ops follow, one JSON object a line."""

_MAX_RETRY_DELAY_S = 120.0
# Ops per transaction when writing a buffer: large enough to amortise commits, small enough that
# one transaction stays well under a second.
_CHUNK_ROWS = 5_000
# How far past max_buffer_rows memory may grow while the spill file cannot be written.
_MEMORY_FACTOR_WITHOUT_SPILL = 10


class SpillFormatError(StoreError):
    """A spill file written by another (newer or older) version of this code."""


def _rows(ops: Iterator[Op] | list[Op]) -> int:
    return sum(len(op["rows"]) for op in ops)


class Outbox:
    """Ordered, bounded, spilling buffer in front of ``send``.

    Args:
        send: writes a list of ops in one transaction; raises StoreUnavailable (retry later) or
            StoreError (refused).
        spill_path: the JSONL file holding ops beyond ``max_buffer_rows`` (replayed on start).
        rejected_path: where refused ops are kept, with their error.
        describe: how log lines name the destination, e.g. a masked database URL.
    """

    def __init__(
        self,
        send: Callable[[list[Op]], None],
        *,
        spill_path: Path,
        rejected_path: Path,
        describe: str = "the results database",
        max_buffer_rows: int = 100_000,
        retry_interval_s: float = 5.0,
    ) -> None:
        self._send = send
        self.spill_path = Path(spill_path)
        self.rejected_path = Path(rejected_path)
        self._describe = describe
        self._max_buffer_rows = max_buffer_rows
        self._retry_interval_s = retry_interval_s
        self._retry_delay_s = retry_interval_s
        self._retry_at = 0.0
        self._unavailable_since: float | None = None
        self._memory: deque[Op] = deque()
        self._memory_rows = 0
        self._spill_failed = False
        self.rejected_rows = 0
        self.lost_rows = 0
        """Rows that could be neither written, spilled nor kept in memory (logged loudly)."""
        self._spilled_rows = _rows(self._read(self.spill_path)) if self.spill_path.exists() else 0

    @property
    def pending_rows(self) -> int:
        """Rows accepted but not yet written (in memory and in the spill file)."""
        return self._memory_rows + self._spilled_rows

    def submit(self, kind: str, rows: list[dict[str, Any]]) -> None:
        """Queue one op; send what is queued unless we are waiting out a retry delay."""
        self._memory.append({"kind": kind, "rows": rows})
        self._memory_rows += len(rows)
        if time.monotonic() >= self._retry_at:
            self._drain()
        if self._memory_rows > self._max_buffer_rows:
            self._spill()

    def flush(self, timeout_s: float = 30.0) -> int:
        """Send everything queued, retrying until done or ``timeout_s`` has passed.

        Returns the number of rows still not written (0 when everything is sent).
        """
        deadline = time.monotonic() + timeout_s
        while not self._drain():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(1.0, remaining))
        return self.pending_rows

    def close(self, timeout_s: float = 60.0) -> int:
        """Flush for up to ``timeout_s``, then move what is left to the spill file.

        Returns the rows left unwritten (kept in the spill file for the next run, or lost when
        even that failed: see :attr:`lost_rows`); says so in the log either way.
        """
        left = self.flush(timeout_s) if self.pending_rows else 0
        if self._memory:
            self._spill(final=True)
        if left and self._spilled_rows:
            logger.error(
                "%d result rows could not be written to %s within %g s; they are kept in %s and "
                "will be written the next time this sweep writes results, e.g. when it is resumed",
                self._spilled_rows,
                self._describe,
                timeout_s,
                self.spill_path,
            )
        if self.rejected_rows:
            logger.error(
                "%s refused %d result rows during this run; they are kept in %s",
                self._describe,
                self.rejected_rows,
                self.rejected_path,
            )
        if self.lost_rows:
            logger.error(
                "%d result rows were LOST: %s was unavailable and %s could not be written",
                self.lost_rows,
                self._describe,
                self.spill_path,
            )
        return left

    # -- sending -----------------------------------------------------------------------------

    def _drain(self) -> bool:
        """Send the spill file, then the memory buffer, in order. False while unavailable."""
        if not self.pending_rows:
            return True
        try:
            if self._spilled_rows:
                self._replay_spill_file()
            while self._memory:
                chunk = self._next_chunk()
                self._send_or_reject(chunk)
                for op in chunk:
                    self._memory.popleft()
                    self._memory_rows -= len(op["rows"])
        except StoreUnavailable as exc:
            self._mark_unavailable(exc)
            return False
        if self._unavailable_since is not None:
            logger.info(
                "%s is reachable again after %.0f s; buffered results written",
                self._describe,
                time.monotonic() - self._unavailable_since,
            )
            self._unavailable_since = None
        self._retry_at = 0.0
        self._retry_delay_s = self._retry_interval_s
        return True

    def _next_chunk(self) -> list[Op]:
        chunk: list[Op] = []
        rows = 0
        for op in self._memory:
            if chunk and rows + len(op["rows"]) > _CHUNK_ROWS:
                break
            chunk.append(op)
            rows += len(op["rows"])
        return chunk

    def _send_or_reject(self, ops: list[Op]) -> None:
        """Send ``ops`` together; if refused, op by op, so only the refused ones are set aside."""
        try:
            self._send(ops)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if len(ops) == 1:
                self._reject(ops[0], exc)
                return
            for op in ops:
                self._send_or_reject([op])

    def _mark_unavailable(self, exc: StoreUnavailable) -> None:
        self._retry_at = time.monotonic() + self._retry_delay_s
        self._retry_delay_s = min(2 * self._retry_delay_s, _MAX_RETRY_DELAY_S)
        if self._unavailable_since is None:
            self._unavailable_since = time.monotonic()
            logger.warning(
                "%s. Training continues: results are buffered in memory (beyond %d rows they go "
                "to %s) and written when the server is back; first retry in %g s",
                str(exc).rstrip("."),
                self._max_buffer_rows,
                self.spill_path,
                self._retry_interval_s,
            )

    # -- the spill and rejected files ----------------------------------------------------------

    def _append(self, path: Path, ops: list[Op], *, default: Callable | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", encoding="utf-8") as f:
            if new:
                f.write(json.dumps(SPILL_FORMAT) + "\n")
            for op in ops:
                f.write(json.dumps(op, allow_nan=False, default=default) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _spill(self, *, final: bool = False) -> None:
        """Move the memory buffer to the end of the spill file (it is older than nothing in
        memory, so order is kept). If the file cannot be written, keep rows in memory (bounded);
        at ``final`` there is nowhere left to keep them: they are counted as lost."""
        ops = list(self._memory)
        try:
            self._append(self.spill_path, ops)
        except OSError as exc:
            if not self._spill_failed:
                self._spill_failed = True
                logger.warning(
                    "cannot write the spill file %s (%s): %d buffered result rows stay in memory "
                    "(up to %d); rows beyond that, or still unwritten at the end, are lost and "
                    "counted",
                    self.spill_path,
                    exc.strerror or exc,
                    self._memory_rows,
                    _MEMORY_FACTOR_WITHOUT_SPILL * self._max_buffer_rows,
                )
            self._drop_beyond(0 if final else _MEMORY_FACTOR_WITHOUT_SPILL * self._max_buffer_rows)
            return
        if not self._spilled_rows:
            logger.info("spilling buffered results to %s", self.spill_path)
        self._spilled_rows += self._memory_rows
        self._memory.clear()
        self._memory_rows = 0

    def _drop_beyond(self, limit: int) -> None:
        while self._memory and self._memory_rows > limit:
            op = self._memory.popleft()
            self._memory_rows -= len(op["rows"])
            self.lost_rows += len(op["rows"])

    def _replay_spill_file(self) -> None:
        """Send the spill file's ops in order and delete it. If the server goes away midway the
        file stays whole; replaying it again is harmless because every write is an upsert."""
        if not self.spill_path.exists():
            self._spilled_rows = 0
            return
        chunk: list[Op] = []
        rows = 0
        for op in self._read(self.spill_path):
            if chunk and rows + len(op["rows"]) > _CHUNK_ROWS:
                self._send_or_reject(chunk)
                chunk, rows = [], 0
            chunk.append(op)
            rows += len(op["rows"])
        if chunk:
            self._send_or_reject(chunk)
        self.spill_path.unlink(missing_ok=True)
        self._spilled_rows = 0

    @staticmethod
    def _read(path: Path) -> Iterator[Op]:
        """The ops of a spill file; raises SpillFormatError for another format or version."""
        with path.open(encoding="utf-8") as f:
            header = f.readline()
            try:
                found = json.loads(header) if header.strip() else SPILL_FORMAT
            except json.JSONDecodeError:
                found = None
            if found != SPILL_FORMAT:
                raise SpillFormatError(
                    f"{path} is not a spill file of this version (first line {header.strip()!r},"
                    f" expected {json.dumps(SPILL_FORMAT)}); move it away to continue"
                )
            for number, line in enumerate(f, start=2):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    # Only a crash while appending leaves a partial line, and only the last one.
                    logger.error("skipping unreadable line %d of %s", number, path)

    def _reject(self, op: Op, exc: StoreError) -> None:
        try:
            # A refused row may hold what JSON cannot (that can be why it was refused).
            self._append(self.rejected_path, [{**op, "error": str(exc)}], default=repr)
        except OSError:
            self.lost_rows += len(op["rows"])
        if not self.rejected_rows:
            logger.error("%s; its %d rows are kept in %s", exc, len(op["rows"]), self.rejected_path)
        self.rejected_rows += len(op["rows"])
