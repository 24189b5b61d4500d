"""Database URLs and connections: which URLs we accept, how they are shown, and the one connect.

URLs are parsed by SQLAlchemy's ``make_url`` (what Optuna's storage uses too). A URL may carry a
password (``postgresql://user:secret@host/db`` or ``?password=secret``), but anything logged,
stored or pickled gets the masked form (``user:***@host``). Prefer keeping passwords out of URLs:
libpq reads ``PGPASSWORD`` and ``~/.pgpass`` by itself, and a URL on the command line is visible
to anyone who can list processes (and in the Ray dashboard's job API).

>>> mask_url("postgresql://mario:s3cret@db.example.org:5432/mario_sweeps")
'postgresql://mario:***@db.example.org:5432/mario_sweeps'
>>> sqlalchemy_url("postgres://mario@db.example.org/mario_sweeps")
'postgresql+psycopg2://mario@db.example.org/mario_sweeps'
>>> split_password("POSTGRESQL://mario@db/x?password=s3cret&sslmode=require")
('postgresql://mario@db/x?sslmode=require', 's3cret')
"""

import os
from typing import Any

import psycopg2
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from callbacks.store.errors import StoreError, one_line

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DB_URL_ENV_VAR",
    "connect",
    "connect_check",
    "has_password",
    "libpq_url",
    "mask_url",
    "remember_password",
    "remembered_password",
    "resolve_db_url",
    "split_password",
    "sqlalchemy_url",
    "validate_db_url",
]

DB_URL_ENV_VAR = "MARIO_SWEEPS_DB_URL"
ALLOWED_DRIVERS = ("postgresql", "postgres", "postgresql+psycopg2")
# Long enough for a cloud database across a region, short enough that a typo fails fast.
CONNECT_TIMEOUT_S = 5
_MASK, _MASK_QUOTED = "***", "%2A%2A%2A"


def resolve_db_url(cli_url: str | None) -> str | None:
    """The database URL to use: the CLI value, else ``$MARIO_SWEEPS_DB_URL``, else None.

    None means "use the embedded server" (see :func:`callbacks.store.embedded.embedded_db_url`).
    """
    return cli_url or os.environ.get(DB_URL_ENV_VAR) or None


def _parse(url: str) -> URL:
    """The parsed URL, or a one-line StoreError that never shows a password."""
    try:
        parsed = make_url(url) if isinstance(url, str) else None
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is None or parsed.drivername.lower() not in ALLOWED_DRIVERS:
        shown = _mask_unparsed(url) if isinstance(url, str) else repr(url)
        raise StoreError(
            f"database URL {shown!r} is not a PostgreSQL URL; allowed forms: "
            "postgresql://user@host:port/db, postgres://..., postgresql+psycopg2://..."
            f" (set with --db-url or ${DB_URL_ENV_VAR}; passwords via PGPASSWORD or ~/.pgpass)"
        )
    if parsed.host and "@" in parsed.host:  # an unencoded '@' in the password
        raise StoreError(
            f"database URL {_mask_unparsed(url)!r} has an '@' in its user or password part; "
            "allowed: percent-encode it as %40, or put the password in PGPASSWORD or ~/.pgpass"
        )
    return parsed


def _mask_unparsed(text: str) -> str:
    """Text that is no URL we can read, shown without anything that may be a password: the user
    part (everything up to the last ``@``) and the query (``?password=...``) are dropped."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "<not a URL>"
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}://{rest.split('?', 1)[0]}"


def validate_db_url(url: str) -> str:
    """Return ``url`` unchanged if it is a PostgreSQL URL, else raise a one-line StoreError."""
    _parse(url)
    return url


def _parts(url: str) -> tuple[URL, str | None]:
    """(the URL as ``postgresql://`` without any password, the password or None)."""
    parsed = _parse(url)
    query = dict(parsed.query)
    password = query.pop("password", None)
    if isinstance(password, tuple):
        password = password[-1]
    password = parsed.password or password or None
    bare = URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=query,
    )
    return bare, password


def split_password(url: str) -> tuple[str, str | None]:
    """``(url without any password, the password or None)``.

    Lets a caller keep the password in memory only, and pickle or log the rest.
    """
    bare, password = _parts(url)
    return bare.render_as_string(hide_password=False), password


def has_password(url: str) -> bool:
    """Whether ``url`` itself carries a password (in its user part or its query)."""
    return _parts(url)[1] is not None


def mask_url(url: str) -> str:
    """``url`` with any password (user part or query) shown as ``***``; the rest as given."""
    try:
        parsed = _parse(url)
    except StoreError:
        return _mask_unparsed(url) if isinstance(url, str) else repr(url)
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": _MASK}, append=False)
    return parsed.render_as_string(hide_password=True).replace(_MASK_QUOTED, "***")


def libpq_url(url: str) -> str:
    """The password-free ``postgresql://`` form psycopg2 accepts (libpq rejects ``+psycopg2``)."""
    return split_password(url)[0]


def sqlalchemy_url(url: str) -> str:
    """The password-free ``postgresql+psycopg2://`` form for Optuna's RDB storage.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed.
    """
    bare, _ = _parts(url)
    return bare.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


_REMEMBERED: dict[str, str] = {}
"""Passwords given in a URL to this process, by the URL without them."""


def remember_password(url: str) -> None:
    """Keep ``url``'s password in this process's memory, for objects that come back from a pickle
    without it: a restored sweep's ``PostgresCallback`` and Optuna storage (``tuner.pkl`` never
    holds a password) then connect with the password given on the command line that resumed it,
    as they would with ``PGPASSWORD``."""
    bare, password = split_password(url)
    if password:
        _REMEMBERED[bare] = password


def remembered_password(url: str) -> str | None:
    return _REMEMBERED.get(split_password(url)[0])


def connect(url: str, *, password: str | None = None, **options: Any) -> Any:
    """The one place a psycopg2 connection is opened.

    A password in ``url`` is used but never passed on inside a URL string; ``password`` (given
    separately, e.g. kept in memory by a callback) wins, then one remembered for this URL
    (:func:`remember_password`). Raises psycopg2's errors unchanged.
    """
    bare, url_password = _parts(url)
    secret = password or url_password or _REMEMBERED.get(bare.render_as_string(hide_password=False))
    kwargs = {"password": secret} if secret else {}
    options.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    return psycopg2.connect(bare.render_as_string(hide_password=False), **options, **kwargs)


def connect_check(url: str, *, password: str | None = None) -> None:
    """Open and close one connection, or raise a one-line StoreError saying why not.

    Covers a malformed URL, wrong password, unreachable host and unknown database, each with the
    password masked, after at most :data:`CONNECT_TIMEOUT_S` seconds.
    """
    _, url_password = _parts(url)
    try:
        conn = connect(url, password=password)
    except psycopg2.Error as exc:
        reason = one_line(exc, secrets=(password, url_password))
        raise StoreError(f"cannot connect to PostgreSQL at {mask_url(url)}: {reason}") from None
    conn.close()
