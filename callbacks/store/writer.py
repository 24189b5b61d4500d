"""ResultsStore: the driver's only writer to the results database.

Every database operation runs inside one context-managed transaction that commits, rolls back on
error and turns psycopg2's errors into :class:`StoreError` (``StoreUnavailable`` when the server
could not be reached or the connection broke).

**The database must not stop training.** The write methods never raise because PostgreSQL is
down: their rows go to an in-memory buffer that keeps their order, one warning is logged, and the
buffer is written on the next write once the retry delay has passed (``retry_interval_s``,
doubling after each failed attempt up to two minutes, so an unreachable host costs the Tune loop
at most one connect timeout per delay) or on :meth:`flush`. Beyond ``max_buffer_rows`` the buffer
is appended to ``<spill_dir>/sweep-<id>.jsonl``, which is replayed first the next time anything
is written for that sweep (also by a later process, e.g. a resumed sweep). Rows PostgreSQL
refuses outright (a bug, not an outage) go to ``sweep-<id>.rejected.jsonl`` with an error in the
log. All writes are idempotent upserts, so replaying a buffer or re-delivering a result never
duplicates a row.

Not thread-safe: Tune calls its callbacks from one thread.
"""

import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
from psycopg2.extras import Json

from callbacks.store.embedded import default_state_dir
from callbacks.store.errors import StoreError, StoreUnavailable, one_line
from callbacks.store.migrations import migrate
from callbacks.store.rows import episode_row, json_safe
from callbacks.store.urls import CONNECT_TIMEOUT_S, libpq_url, mask_url, split_password

__all__ = ["SWEEP_STATUSES", "ResultsStore"]

logger = logging.getLogger(__name__)

SWEEP_STATUSES = ("running", "finished", "failed", "interrupted")

TRIAL_COLUMNS = (
    "params",
    "status",
    "stop_reason",
    "best_metric",
    "best_checkpoint",
    "error",
    "node_ip",
    "last_env_steps",
    "started_at",
    "finished_at",
)
ITERATION_COLUMNS = (
    "training_iteration",
    "env_steps_lifetime",
    "metric",
    "return_smoothed",
    "x_pos_smoothed",
    "episode_return_mean",
    "episode_return_max",
    "x_pos_mean",
    "x_pos_max",
    "flag_rate",
    "episodes",
    "loss",
    "entropy",
    "kl",
    "time_total_s",
    "node_ip",
    "result",
)
EPISODE_COLUMNS = (
    "episode_id",
    "training_iteration",
    "env_runner",
    "env_index",
    "episode_return",
    "length",
    "x_pos",
    "x_pos_max",
    "flag_get",
    "score",
    "coins",
    "time_left",
    "world",
    "stage",
    "life",
    "status",
    "game",
    "task_id",
)
_JSONB_COLUMNS = frozenset({"params", "result", "search_space", "scheduler"})
# A restarted trial keeps its first start time.
_KEEP_FIRST = frozenset({"started_at"})

_MAX_RETRY_DELAY_S = 120.0
# A write waiting on a lock, or a server that stopped answering, must not hold the Tune loop:
# past these limits the write fails like an outage and its rows are buffered.
_CONNECTION_OPTIONS = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "application_name": "mario-sweeps",
    "options": "-c statement_timeout=20s",
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}

# Ops per transaction when writing a buffer: large enough to amortise commits, small enough that
# one transaction stays well under a second.
_CHUNK_ROWS = 5_000


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _values(row: Mapping[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(Json(row.get(c)) if c in _JSONB_COLUMNS else row.get(c) for c in columns)


def _write_trials(cur: Any, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        columns = [c for c in TRIAL_COLUMNS if c in row]
        updates = ", ".join(
            f"{c} = coalesce(trials.{c}, EXCLUDED.{c})"
            if c in _KEEP_FIRST
            else f"{c} = EXCLUDED.{c}"
            for c in columns
        )
        cur.execute(
            f"INSERT INTO mario_sweeps.trials AS trials (sweep_id, trial_id, {', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * (len(columns) + 2))})"
            " ON CONFLICT (sweep_id, trial_id) DO "
            + (f"UPDATE SET {updates}" if columns else "NOTHING"),
            (row["sweep_id"], row["trial_id"], *_values(row, columns)),
        )


def _write_iterations(cur: Any, rows: list[dict[str, Any]]) -> None:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ITERATION_COLUMNS[1:])
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO mario_sweeps.iterations (sweep_id, trial_id, {', '.join(ITERATION_COLUMNS)})"
        " VALUES %s ON CONFLICT (sweep_id, trial_id, training_iteration)"
        f" DO UPDATE SET {updates}",
        [(r["sweep_id"], r["trial_id"], *_values(r, ITERATION_COLUMNS)) for r in rows],
        page_size=1_000,
    )


def _write_episodes(cur: Any, rows: list[dict[str, Any]]) -> None:
    # An episode's facts never change, so a re-delivered episode is simply skipped.
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO mario_sweeps.episodes (sweep_id, trial_id, {', '.join(EPISODE_COLUMNS)})"
        " VALUES %s ON CONFLICT (sweep_id, trial_id, episode_id) DO NOTHING",
        [(r["sweep_id"], r["trial_id"], *_values(r, EPISODE_COLUMNS)) for r in rows],
        page_size=5_000,
    )


def _write_sweep_status(cur: Any, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        cur.execute(
            "UPDATE mario_sweeps.sweeps SET status = %s, finished_at = %s WHERE id = %s",
            (row["status"], row["finished_at"], row["sweep_id"]),
        )


def _rewind_trials(cur: Any, rows: list[dict[str, Any]]) -> None:
    """Forget what a trial recorded from ``from_iteration`` on: it is about to replay them."""
    for row in rows:
        for table in ("episodes", "iterations"):
            cur.execute(
                f"DELETE FROM mario_sweeps.{table}"
                " WHERE sweep_id = %s AND trial_id = %s AND training_iteration >= %s",
                (row["sweep_id"], row["trial_id"], row["from_iteration"]),
            )


_WRITERS = {
    "rewind": _rewind_trials,
    "trials": _write_trials,
    "iterations": _write_iterations,
    "episodes": _write_episodes,
    "sweep_status": _write_sweep_status,
}


class ResultsStore:
    """Writes one sweep's rows (sweep, trials, iterations, episodes) to PostgreSQL.

    Use :meth:`start_sweep` to create or resume a sweep, or pass ``sweep_id`` to write to one that
    exists (what :class:`~callbacks.postgres_callback.PostgresCallback` does). ``db_url`` may carry
    a password; it is kept in memory only and every message shows the URL masked. Call
    :meth:`close` at the end: it waits for buffered rows and says loudly what is left.
    """

    def __init__(
        self,
        db_url: str,
        *,
        sweep_id: int | None = None,
        password: str | None = None,
        spill_dir: Path | None = None,
        max_buffer_rows: int = 100_000,
        retry_interval_s: float = 5.0,
    ) -> None:
        url, url_password = split_password(db_url)
        self._libpq_url = libpq_url(url)
        self._password = password or url_password
        self.masked_url = mask_url(db_url)
        self._spill_dir = Path(spill_dir or default_state_dir() / "spill")
        self._max_buffer_rows = max_buffer_rows
        self._retry_interval_s = retry_interval_s
        self._retry_delay_s = retry_interval_s
        self._conn: Any = None
        self._memory: deque[dict[str, Any]] = deque()
        self._memory_rows = 0
        self._spilled_rows = 0
        self._retry_at = 0.0
        self._unavailable_since: float | None = None
        self.rejected_rows = 0
        self.sweep_id: int | None = None
        if sweep_id is not None:
            self._attach(sweep_id)

    def __getstate__(self) -> None:
        raise TypeError("a ResultsStore holds a live connection; create it where it is used")

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def spill_path(self) -> Path:
        """The JSONL file that holds buffered rows beyond ``max_buffer_rows`` (may not exist)."""
        return self._spill_dir / f"sweep-{self._require_sweep()}.jsonl"

    @property
    def rejected_path(self) -> Path:
        """The JSONL file that holds rows PostgreSQL refused (may not exist)."""
        return self._spill_dir / f"sweep-{self._require_sweep()}.rejected.jsonl"

    @property
    def pending_rows(self) -> int:
        """Rows accepted but not yet written (in memory and in the spill file)."""
        return self._memory_rows + self._spilled_rows

    # -- connection and transactions -------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            kwargs = {"password": self._password} if self._password else {}
            try:
                self._conn = psycopg2.connect(self._libpq_url, **_CONNECTION_OPTIONS, **kwargs)
            except psycopg2.Error as exc:
                raise StoreUnavailable(
                    f"cannot connect to PostgreSQL at {self.masked_url}: {self._describe(exc)}"
                ) from None
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass  # already broken; we only want it gone
            self._conn = None

    def _describe(self, exc: BaseException) -> str:
        return one_line(exc, secrets=(self._password,))

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One transaction: commit on success, roll back on any error, psycopg2 errors become
        StoreUnavailable (connection-level) or StoreError (the statement was refused)."""
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except psycopg2.Error as exc:
            self._rollback(conn)
            if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
                self._disconnect()
                raise StoreUnavailable(
                    f"lost PostgreSQL at {self.masked_url}: {self._describe(exc)}"
                ) from None
            raise StoreError(
                f"PostgreSQL at {self.masked_url} refused a write: {self._describe(exc)}"
            ) from exc
        except BaseException:
            self._rollback(conn)
            raise

    def _rollback(self, conn: Any) -> None:
        try:
            conn.rollback()
        except psycopg2.Error:
            self._disconnect()

    # -- sweeps (synchronous: the runner must know at once) ------------------------------------

    def start_sweep(
        self,
        *,
        name: str,
        algo: str,
        search_space: Mapping[str, Any],
        metric: str,
        mode: str,
        scheduler: Mapping[str, Any] | None = None,
        command: str | None = None,
        ray_address: str | None = None,
        code_version: str | None = None,
        resume: bool = False,
    ) -> int:
        """Create the sweep row (after migrating the schema) and return its id.

        With ``resume``, an existing sweep of that name is reused and set back to running;
        without it, an existing name is an error. Raises StoreError (not buffered): a sweep must
        not start without its row.
        """
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        migrate(self._connection())
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO mario_sweeps.sweeps (name, algo, search_space, metric, mode,"
                " scheduler, command, ray_address, code_version, status)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'running')"
                " ON CONFLICT (name) DO NOTHING RETURNING id",
                (
                    name,
                    algo,
                    Json(json_safe(search_space)),
                    metric,
                    mode,
                    Json(json_safe(scheduler)),
                    command,
                    ray_address,
                    code_version,
                ),
            )
            row = cur.fetchone()
            if row is None and not resume:
                cur.execute(
                    "SELECT id, status, started_at FROM mario_sweeps.sweeps WHERE name = %s",
                    (name,),
                )
                sweep_id, status, started_at = cur.fetchone()
                raise StoreError(
                    f"a sweep named {name!r} already exists (id {sweep_id}, {status}, started "
                    f"{started_at:%Y-%m-%d %H:%M}); pass --resume to continue it or choose "
                    "another --name"
                )
            if row is None:
                cur.execute(
                    "UPDATE mario_sweeps.sweeps SET status = 'running', finished_at = NULL"
                    " WHERE name = %s RETURNING id",
                    (name,),
                )
                row = cur.fetchone()
        self._attach(row[0])
        return row[0]

    def finish_sweep(self, status: str) -> None:
        """Record the sweep's end: ``finished``, ``failed`` or ``interrupted`` (buffered)."""
        if status not in SWEEP_STATUSES[1:]:
            raise ValueError(f"sweep status must be one of {SWEEP_STATUSES[1:]}, got {status!r}")
        row = {"sweep_id": self._require_sweep(), "status": status, "finished_at": _now()}
        self._submit("sweep_status", [row])

    # -- trials, iterations, episodes (buffered when PostgreSQL is away) --------------------

    def upsert_trial(self, trial_id: str, **columns: Any) -> None:
        """Insert the trial or update just the given columns (see ``TRIAL_COLUMNS``).

        ``started_at`` keeps its first value; datetimes may be given as datetime objects.
        """
        unknown = set(columns) - set(TRIAL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown trial columns {sorted(unknown)}; allowed: {TRIAL_COLUMNS}")
        row = json_safe({"sweep_id": self._require_sweep(), "trial_id": trial_id, **columns})
        self._submit("trials", [row])

    def write_iteration(self, trial_id: str, row: Mapping[str, Any]) -> None:
        """Upsert one ``iterations`` row, as built by :func:`callbacks.store.rows.iteration_row`."""
        unknown = set(row) - set(ITERATION_COLUMNS)
        if unknown or "training_iteration" not in row:
            raise ValueError(
                f"an iteration row needs training_iteration and only {ITERATION_COLUMNS}; "
                f"unknown: {sorted(unknown)}"
            )
        full = json_safe({"sweep_id": self._require_sweep(), "trial_id": trial_id, **row})
        self._submit("iterations", [full])

    def rewind_trial(self, trial_id: str, from_iteration: int) -> None:
        """Delete the trial's iterations and episodes from ``from_iteration`` on (buffered, in
        order): a trial restored from an older checkpoint replays them with new episodes."""
        row = {"sweep_id": self._require_sweep(), "trial_id": trial_id}
        self._submit("rewind", [{**row, "from_iteration": int(from_iteration)}])

    def write_episodes(
        self,
        trial_id: str,
        training_iteration: int | None,
        records: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert EpisodeRecorder records (see :func:`callbacks.store.rows.episode_row`)."""
        if not records:
            return
        sweep_id = self._require_sweep()
        rows = [
            {
                "sweep_id": sweep_id,
                "trial_id": trial_id,
                **episode_row(
                    record,
                    training_iteration=training_iteration,
                    fallback_id=f"{trial_id}:{training_iteration}:{index}",
                ),
            }
            for index, record in enumerate(records)
        ]
        self._submit("episodes", rows)

    # -- buffering ---------------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> int:
        """Write everything buffered, retrying until done or ``timeout_s`` has passed.

        Returns the number of rows still not written (0 when everything is in PostgreSQL).
        """
        deadline = time.monotonic() + timeout_s
        while not self._drain():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(1.0, remaining))
        return self.pending_rows

    def close(self, timeout_s: float = 60.0) -> int:
        """Flush (for up to ``timeout_s``), then close the connection.

        Rows that still could not be written stay in the spill file (logged as an error with its
        path); they are written the next time a ResultsStore writes for this sweep, e.g. when the
        sweep is resumed. Returns the number of such rows.
        """
        left = self.flush(timeout_s) if self.pending_rows else 0
        if self._memory:
            self._spill()
        if left:
            logger.error(
                "%d result rows could not be written to PostgreSQL at %s within %g s; they are "
                "kept in %s and will be written the next time this sweep (id %d) writes results,"
                " e.g. when it is resumed",
                left,
                self.masked_url,
                timeout_s,
                self.spill_path,
                self.sweep_id,
            )
        if self.rejected_rows:
            logger.error(
                "PostgreSQL refused %d result rows during this run; they are kept in %s",
                self.rejected_rows,
                self.rejected_path,
            )
        self._disconnect()
        return left

    def _require_sweep(self) -> int:
        if self.sweep_id is None:
            raise RuntimeError("no sweep: call start_sweep() or pass sweep_id= first")
        return self.sweep_id

    def _attach(self, sweep_id: int) -> None:
        self.sweep_id = sweep_id
        self._spilled_rows = 0
        if self.spill_path.exists():
            for op in self._read_ops(self.spill_path):
                self._spilled_rows += len(op["rows"])

    def _submit(self, kind: str, rows: list[dict[str, Any]]) -> None:
        self._memory.append({"kind": kind, "rows": rows})
        self._memory_rows += len(rows)
        if time.monotonic() >= self._retry_at:
            self._drain()
        if self._memory_rows > self._max_buffer_rows:
            self._spill()

    def _drain(self) -> bool:
        """Write the spill file, then the memory buffer, in order. False if PostgreSQL is away."""
        if not self.pending_rows:
            return True
        try:
            if self._spilled_rows:
                self._replay_spill_file()
            while self._memory:
                chunk = self._next_chunk()
                self._write_ops(chunk)
                for op in chunk:
                    self._memory.popleft()
                    self._memory_rows -= len(op["rows"])
        except StoreUnavailable as exc:
            self._mark_unavailable(exc)
            return False
        if self._unavailable_since is not None:
            logger.info(
                "PostgreSQL at %s is reachable again after %.0f s; buffered results written",
                self.masked_url,
                time.monotonic() - self._unavailable_since,
            )
            self._unavailable_since = None
        self._retry_at = 0.0
        self._retry_delay_s = self._retry_interval_s
        return True

    def _next_chunk(self) -> list[dict[str, Any]]:
        chunk, rows = [], 0
        for op in self._memory:
            if chunk and rows + len(op["rows"]) > _CHUNK_ROWS:
                break
            chunk.append(op)
            rows += len(op["rows"])
        return chunk

    def _write_ops(self, ops: list[dict[str, Any]]) -> None:
        """Write ``ops`` in one transaction; if PostgreSQL refuses it, retry op by op so that only
        the refused ones are set aside."""
        try:
            with self._transaction() as cur:
                for op in ops:
                    _WRITERS[op["kind"]](cur, op["rows"])
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if len(ops) == 1:
                self._reject(ops[0], exc)
                return
            for op in ops:
                self._write_ops([op])

    def _mark_unavailable(self, exc: StoreUnavailable) -> None:
        self._disconnect()
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

    def _spill(self) -> None:
        """Move the memory buffer to the end of the spill file (it is older than nothing in
        memory, so order is kept)."""
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        first = not self._spilled_rows
        with self.spill_path.open("a", encoding="utf-8") as f:
            for op in self._memory:
                f.write(json.dumps(op, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if first:
            logger.info("spilling buffered results to %s", self.spill_path)
        self._spilled_rows += self._memory_rows
        self._memory.clear()
        self._memory_rows = 0

    def _replay_spill_file(self) -> None:
        """Write the spill file's ops in order and delete it. If the server goes away midway the
        file stays whole; replaying it again is harmless because every write is an upsert."""
        chunk: list[dict[str, Any]] = []
        rows = 0
        if not self.spill_path.exists():
            # Another store for this sweep (e.g. the runner's) has replayed it already.
            self._spilled_rows = 0
            return
        for op in self._read_ops(self.spill_path):
            if chunk and rows + len(op["rows"]) > _CHUNK_ROWS:
                self._write_ops(chunk)
                chunk, rows = [], 0
            chunk.append(op)
            rows += len(op["rows"])
        if chunk:
            self._write_ops(chunk)
        self.spill_path.unlink(missing_ok=True)
        self._spilled_rows = 0

    def _read_ops(self, path: Path) -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    # Only a crash while appending leaves a partial line, and only the last one.
                    logger.error("skipping unreadable line %d of %s", number, path)

    def _reject(self, op: dict[str, Any], exc: StoreError) -> None:
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        with self.rejected_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({**op, "error": str(exc)}, allow_nan=False) + "\n")
        if not self.rejected_rows:
            logger.error("%s; its %d rows are kept in %s", exc, len(op["rows"]), self.rejected_path)
        self.rejected_rows += len(op["rows"])
