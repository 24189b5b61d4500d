"""``ResultsStore``: the one writer of a sweep's rows, over one connection and one outbox.

Every database operation runs inside one context-managed transaction that commits, rolls back on
error and turns psycopg2's errors into :class:`StoreError` (``StoreUnavailable`` when the server
could not be reached or the connection broke). Sweep-row creation is synchronous (a sweep must not
start without its row); every other write goes through the :class:`~callbacks.store.outbox.Outbox`,
so an outage never stops training. The schema must be current: the runner calls
:func:`~callbacks.store.schema.prepare_database` once, before Ray starts.

On the driver exactly one ``ResultsStore`` writes for a sweep at a time: the ``PostgresCallback``'s,
from Tune's ``setup`` to ``on_experiment_end``.
"""

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2.extras import Json

from callbacks.records import EpisodeRecord
from callbacks.store.connection import CONNECT_TIMEOUT_S, connect, mask_url, split_password
from callbacks.store.embedded import default_state_dir
from callbacks.store.errors import StoreError, StoreUnavailable, one_line
from callbacks.store.outbox import Op, Outbox
from callbacks.store.tables import (
    BC_ITERATION_COLUMNS,
    DEMONSTRATION_COLUMNS,
    ITERATION_COLUMNS,
    LINEAGE_COLUMNS,
    TRIAL_COLUMNS,
    WRITERS,
    json_safe,
)

__all__ = ["SWEEP_STATUSES", "ResultsStore", "find_sweep", "set_sweep_status"]

logger = logging.getLogger(__name__)

SWEEP_STATUSES = ("running", "finished", "failed", "interrupted")

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


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ResultsStore:
    """Writes one sweep's rows (sweep, trials, iterations, episodes) to PostgreSQL.

    Use :meth:`start_sweep` to create or reopen a sweep, or pass ``sweep_id`` to write to one that
    exists. ``db_url`` may carry a password; it is kept in memory only and every message shows the
    URL masked. Call :meth:`close` at the end: it waits for buffered rows and says what is left.
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
        self._url, url_password = split_password(db_url)
        self._password = password or url_password
        self.masked_url = mask_url(db_url)
        self._spill_dir = Path(spill_dir or default_state_dir() / "spill")
        self._outbox_options: dict[str, Any] = {
            "max_buffer_rows": max_buffer_rows,
            "retry_interval_s": retry_interval_s,
        }
        self._conn: Any = None
        self._outbox: Outbox | None = None
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
    def outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("no sweep: call start_sweep() or pass sweep_id= first")
        return self._outbox

    @property
    def spill_path(self) -> Path:
        return self.outbox.spill_path

    @property
    def rejected_path(self) -> Path:
        return self.outbox.rejected_path

    @property
    def pending_rows(self) -> int:
        return self.outbox.pending_rows

    @property
    def rejected_rows(self) -> int:
        return self.outbox.rejected_rows

    @property
    def lost_rows(self) -> int:
        return self.outbox.lost_rows

    # -- connection and transactions -------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self._url, password=self._password, **_CONNECTION_OPTIONS)
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

    def _send(self, ops: list[Op]) -> None:
        with self._transaction() as cur:
            for op in ops:
                WRITERS[op["kind"]](cur, op["rows"])

    # -- the sweep row (synchronous: the caller must know at once) --------------------------

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
        settings: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> int:
        """Create the sweep row and return its id.

        With ``resume``, an existing sweep of that name is reused and set back to running;
        without it, an existing name is an error. Raises StoreError (not buffered).
        """
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        insert = _INSERT_SWEEP_SQL
        values = (
            name,
            algo,
            Json(json_safe(search_space)),
            metric,
            mode,
            Json(json_safe(scheduler)),
            command,
            ray_address,
            code_version,
            Json(json_safe(settings)),
        )
        with self._transaction() as cur:
            cur.execute(insert, values)
            row = cur.fetchone()
            if row is None and not resume:
                info = _sweep_info(cur, name)
                assert info is not None  # the insert met this name's row, in this transaction
                if not _reusable(info):
                    raise StoreError(_taken_message(info))
                # A start that never got a trial going (e.g. Tune failed in its setup) left an
                # empty row: it holds nothing, so it must not block the name.
                cur.execute("DELETE FROM mario_sweeps.sweeps WHERE id = %s", (info["id"],))
                cur.execute(insert, values)
                row = cur.fetchone()
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
        self.outbox.submit("sweep_status", [row])

    # -- trials, iterations, episodes (buffered when PostgreSQL is away) --------------------

    def upsert_trial(self, trial_id: str, **columns: Any) -> None:
        """Insert the trial or update just the given columns (see ``TRIAL_COLUMNS``).

        ``started_at`` keeps its first value; datetimes may be given as datetime objects.
        """
        unknown = set(columns) - set(TRIAL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown trial columns {sorted(unknown)}; allowed: {TRIAL_COLUMNS}")
        row = json_safe({"sweep_id": self._require_sweep(), "trial_id": trial_id, **columns})
        self.outbox.submit("trials", [row])

    def write_iteration(self, trial_id: str, row: Mapping[str, Any]) -> None:
        """Upsert one ``iterations`` row (see :func:`callbacks.store.tables.iteration_row`)."""
        unknown = set(row) - set(ITERATION_COLUMNS)
        if unknown or "training_iteration" not in row:
            raise ValueError(
                f"an iteration row needs training_iteration and only {ITERATION_COLUMNS}; "
                f"unknown: {sorted(unknown)}"
            )
        full = {"sweep_id": self._require_sweep(), "trial_id": trial_id, **row}
        self.outbox.submit("iterations", [full])

    def score_trial(self, trial_id: str, tail_env_steps: int) -> None:
        """Store the trial's ``final_metric`` from its iterations of the last ``tail_env_steps``
        env steps (buffered behind them, in order)."""
        row = {"sweep_id": self._require_sweep(), "trial_id": trial_id}
        self.outbox.submit("final_metric", [{**row, "tail_env_steps": int(tail_env_steps)}])

    def write_lineage(self, trial_id: str, row: Mapping[str, Any]) -> None:
        """Upsert one PBT lineage event (see ``LINEAGE_COLUMNS``): an exploit or a collapse."""
        unknown = set(row) - set(LINEAGE_COLUMNS)
        if unknown:
            raise ValueError(
                f"unknown lineage columns {sorted(unknown)}; allowed: {LINEAGE_COLUMNS}"
            )
        full = json_safe({"sweep_id": self._require_sweep(), "trial_id": trial_id, **row})
        self.outbox.submit("lineage", [full])

    def rewind_trial(self, trial_id: str, from_iteration: int) -> None:
        """Delete the trial's iterations and episodes from ``from_iteration`` on (buffered, in
        order): a trial restored from an older checkpoint replays them with new episodes."""
        row = {"sweep_id": self._require_sweep(), "trial_id": trial_id}
        self.outbox.submit("rewind", [{**row, "from_iteration": int(from_iteration)}])

    def write_episodes(self, trial_id: str, records: Sequence[EpisodeRecord]) -> None:
        """Insert episode records as they are (their fields are the columns)."""
        if not records:
            return
        sweep_id = self._require_sweep()
        rows = [{"sweep_id": sweep_id, "trial_id": trial_id, **record} for record in records]
        self.outbox.submit("episodes", rows)

    def write_evaluations(self, trial_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Upsert evaluation episodes (see ``EVALUATION_COLUMNS``) of one trial's checkpoint."""
        sweep_id = self._require_sweep()
        full = [json_safe({"sweep_id": sweep_id, "trial_id": trial_id, **row}) for row in rows]
        if full:
            self.outbox.submit("evaluations", full)

    def write_imitation(
        self,
        demonstrations: Sequence[Mapping[str, Any]],
        bc_iterations: Sequence[Mapping[str, Any]],
    ) -> None:
        """The sweep's BC stage: the demonstration episodes it cloned (``DEMONSTRATION_COLUMNS``)
        and its BC iterations (``BC_ITERATION_COLUMNS``); written once, kept on a replay."""
        sweep_id = self._require_sweep()
        for kind, rows, columns in (
            ("demonstrations", demonstrations, DEMONSTRATION_COLUMNS),
            ("bc_iterations", bc_iterations, BC_ITERATION_COLUMNS),
        ):
            for row in rows:
                if set(row) != set(columns):
                    raise ValueError(f"a {kind} row has exactly the columns {columns}: {row}")
            if rows:
                self.outbox.submit(kind, [json_safe({"sweep_id": sweep_id, **r}) for r in rows])

    # -- buffering ---------------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> int:
        """Write everything buffered within ``timeout_s``; return the rows still unwritten."""
        return self.outbox.flush(timeout_s)

    def close(self, timeout_s: float = 60.0) -> int:
        """Flush (for up to ``timeout_s``), then close the connection.

        Rows that still could not be written stay in the spill file; they are written the next
        time a ResultsStore writes for this sweep, e.g. when it is resumed. Returns their number.
        """
        left = self._outbox.close(timeout_s) if self._outbox is not None else 0
        self._disconnect()
        return left

    def _require_sweep(self) -> int:
        if self.sweep_id is None:
            raise RuntimeError("no sweep: call start_sweep() or pass sweep_id= first")
        return self.sweep_id

    def _attach(self, sweep_id: int) -> None:
        self.sweep_id = sweep_id
        self._outbox = Outbox(
            self._send,
            spill_path=self._spill_dir / f"sweep-{sweep_id}.jsonl",
            rejected_path=self._spill_dir / f"sweep-{sweep_id}.rejected.jsonl",
            describe=f"PostgreSQL at {self.masked_url}",
            **self._outbox_options,
        )


_INSERT_SWEEP_SQL = (
    "INSERT INTO mario_sweeps.sweeps (name, algo, search_space, metric, mode,"
    " scheduler, command, ray_address, code_version, settings, status)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'running')"
    " ON CONFLICT (name) DO NOTHING RETURNING id"
)


def _sweep_info(cur: Any, name: str) -> dict[str, Any] | None:
    cur.execute(
        "SELECT s.id, s.status, s.started_at, count(t.trial_id), s.algo"
        " FROM mario_sweeps.sweeps s LEFT JOIN mario_sweeps.trials t ON t.sweep_id = s.id"
        " WHERE s.name = %s GROUP BY s.id",
        (name,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return {
        "name": name,
        "id": row[0],
        "status": row[1],
        "started_at": row[2],
        "trials": row[3],
        "algo": row[4],
    }


def _reusable(info: Mapping[str, Any]) -> bool:
    """A sweep row that ended before any trial started holds nothing worth keeping."""
    return info["trials"] == 0 and info["status"] in ("failed", "interrupted")


def _taken_message(info: Mapping[str, Any]) -> str:
    return (
        f"a sweep named {info['name']!r} already exists (id {info['id']}, {info['status']}, "
        f"{info['trials']} trials, started {info['started_at']:%Y-%m-%d %H:%M}); "
        f"continue it with --resume --name {info['name']}, or pick a new --name"
    )


def find_sweep(db_url: str, name: str) -> dict[str, Any] | None:
    """The sweep row named ``name`` (id, status, started_at, trials, algo), or None if there is none
    or only an empty one a new start may replace. Read-only."""
    conn = _one_shot(db_url)
    try:
        with conn, conn.cursor() as cur:
            info = _sweep_info(cur, name)
            return None if info is None or _reusable(info) else info
    finally:
        conn.close()


def set_sweep_status(db_url: str, name: str, status: str) -> None:
    """Mark a sweep's end from outside Tune (``fit()`` raised, or a second Ctrl-C), once the
    sweep's own store has closed; its still-running trials become ``interrupted``. Only a sweep
    still marked running changes. Best effort: an unreachable database is logged, not raised."""
    try:
        conn = _one_shot(db_url)
    except StoreError as exc:
        logger.error("could not mark sweep %r %s: %s", name, status, exc)
        return
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE mario_sweeps.sweeps SET status = %s, finished_at = now()"
                " WHERE name = %s AND status = 'running' RETURNING id",
                (status, name),
            )
            for (sweep_id,) in cur.fetchall():
                cur.execute(
                    "UPDATE mario_sweeps.trials SET status = 'interrupted',"
                    " stop_reason = 'interrupted', finished_at = now()"
                    " WHERE sweep_id = %s AND status = 'running'",
                    (sweep_id,),
                )
    except psycopg2.Error as exc:
        logger.error("could not mark sweep %r %s: %s", name, status, one_line(exc))
    finally:
        conn.close()


def _one_shot(db_url: str) -> Any:
    try:
        return connect(db_url)
    except psycopg2.Error as exc:
        _, password = split_password(db_url)
        raise StoreError(
            f"cannot connect to PostgreSQL at {mask_url(db_url)}: "
            f"{one_line(exc, secrets=(password,))}"
        ) from None
