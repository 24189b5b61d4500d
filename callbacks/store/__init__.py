"""The driver-side results store, one module per concept.

- ``connection``: which database URLs we accept, how they are shown (masked), the one ``connect``;
- ``embedded``: the embedded PostgreSQL server used when no URL is given;
- ``schema``: schema ``mario_sweeps`` and its versioned migrations;
- ``tables``: the columns, the rows Tune results become, and the SQL that writes them;
- ``outbox``: store-and-forward (ordered buffer, backoff, versioned JSONL spill, replay);
- ``store``: ``ResultsStore``, the one writer of a sweep's rows.

Typical use by the sweep runner::

    url = resolve_db_url(args.db_url) or embedded_db_url()
    prepare_database(url)                 # one-line StoreError on any problem; migrates once
    ...                                   # Tuner(..., callbacks=[PostgresCallback(...)])
"""

from callbacks.store.connection import (
    DB_URL_ENV_VAR,
    connect,
    connect_check,
    has_password,
    mask_url,
    remember_password,
    remembered_password,
    resolve_db_url,
    split_password,
    sqlalchemy_url,
    validate_db_url,
)
from callbacks.store.embedded import DATABASE_NAME, default_state_dir, embedded_db_url
from callbacks.store.errors import StoreError, StoreUnavailable
from callbacks.store.schema import SCHEMA, SCHEMA_VERSION, migrate, prepare_database
from callbacks.store.store import ResultsStore, find_sweep, set_sweep_status

__all__ = [
    "DATABASE_NAME",
    "DB_URL_ENV_VAR",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ResultsStore",
    "StoreError",
    "StoreUnavailable",
    "connect",
    "connect_check",
    "default_state_dir",
    "embedded_db_url",
    "find_sweep",
    "has_password",
    "mask_url",
    "remember_password",
    "remembered_password",
    "migrate",
    "prepare_database",
    "resolve_db_url",
    "set_sweep_status",
    "split_password",
    "sqlalchemy_url",
    "validate_db_url",
]
