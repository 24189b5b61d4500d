"""The driver-side results store: PostgreSQL URLs, the embedded server, the schema and the writer.

Typical use by the sweep runner::

    url = resolve_db_url(args.db_url) or embedded_db_url()
    prepare_database(url)                       # one-line StoreError on any problem
    store = ResultsStore(url)
    sweep_id = store.start_sweep(name=..., algo=..., search_space=..., metric=..., mode=...)
    ...                                         # Tuner(..., callbacks=[PostgresCallback(...)])
    store.finish_sweep("finished")
    store.close()
"""

from callbacks.store.embedded import DATABASE_NAME, default_state_dir, embedded_db_url
from callbacks.store.errors import StoreError, StoreUnavailable
from callbacks.store.migrations import SCHEMA, SCHEMA_VERSION, migrate, prepare_database
from callbacks.store.rows import EPISODES_KEY, iteration_row, json_safe, lookup
from callbacks.store.urls import (
    DB_URL_ENV_VAR,
    connect_check,
    mask_url,
    resolve_db_url,
    split_password,
    sqlalchemy_url,
    validate_db_url,
)
from callbacks.store.writer import ResultsStore

__all__ = [
    "DATABASE_NAME",
    "DB_URL_ENV_VAR",
    "EPISODES_KEY",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ResultsStore",
    "StoreError",
    "StoreUnavailable",
    "connect_check",
    "default_state_dir",
    "embedded_db_url",
    "iteration_row",
    "json_safe",
    "lookup",
    "mask_url",
    "migrate",
    "prepare_database",
    "resolve_db_url",
    "split_password",
    "sqlalchemy_url",
    "validate_db_url",
]
