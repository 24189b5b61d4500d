"""Database URLs: where they come from, which forms we accept, and how they may be shown.

A URL may carry a password (``postgresql://user:secret@host/db``), but anything that is logged,
stored or pickled gets the masked form (``user:***@host``). Prefer keeping passwords out of URLs
altogether: psycopg2 (libpq) reads ``PGPASSWORD`` and ``~/.pgpass`` by itself.

>>> mask_url("postgresql://mario:s3cret@db.example.org:5432/mario_sweeps")
'postgresql://mario:***@db.example.org:5432/mario_sweeps'
>>> sqlalchemy_url("postgres://mario@db.example.org/mario_sweeps")
'postgresql+psycopg2://mario@db.example.org/mario_sweeps'
"""

import os
import re
from urllib.parse import unquote

import psycopg2

from callbacks.store.errors import StoreError, one_line

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DB_URL_ENV_VAR",
    "connect_check",
    "libpq_url",
    "mask_url",
    "resolve_db_url",
    "split_password",
    "sqlalchemy_url",
    "validate_db_url",
]

DB_URL_ENV_VAR = "MARIO_SWEEPS_DB_URL"
ALLOWED_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")
# Long enough for a cloud database across a region, short enough that a typo fails fast.
CONNECT_TIMEOUT_S = 5

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)")


def resolve_db_url(cli_url: str | None) -> str | None:
    """The database URL to use: the CLI value, else ``$MARIO_SWEEPS_DB_URL``, else None.

    None means "use the embedded server" (see :func:`callbacks.store.embedded.embedded_db_url`).
    """
    return cli_url or os.environ.get(DB_URL_ENV_VAR) or None


def validate_db_url(url: str) -> str:
    """Return ``url`` unchanged if it is a PostgreSQL URL, else raise a one-line StoreError."""
    match = _SCHEME.match(url) if isinstance(url, str) else None
    if match is None or match.group(1).lower() not in ALLOWED_SCHEMES:
        shown = mask_url(url) if isinstance(url, str) else repr(url)
        raise StoreError(
            f"database URL {shown!r} is not a PostgreSQL URL; allowed forms: "
            "postgresql://user@host:port/db, postgres://..., postgresql+psycopg2://..."
            f" (set with --db-url or ${DB_URL_ENV_VAR}; passwords via PGPASSWORD or ~/.pgpass)"
        )
    return url


def _userinfo_bounds(url: str) -> tuple[int, int] | None:
    """Start and end of the ``user[:password]`` part of ``url``, or None if there is none.

    The host part ends at the query; a raw ``@`` inside a password is tolerated by taking the last
    ``@`` before the query.
    """
    match = _SCHEME.match(url)
    if match is None:
        return None
    start = match.end()
    query = url.find("?", start)
    at = url.rfind("@", start, query if query >= 0 else len(url))
    return (start, at) if at >= 0 else None


def mask_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) as ``***``."""
    bounds = _userinfo_bounds(url)
    if bounds is not None:
        start, at = bounds
        user, sep, password = url[start:at].partition(":")
        if password:
            url = f"{url[:start]}{user}{sep}***{url[at:]}"
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + ("***" if m.group(2) else ""), url)


def split_password(url: str) -> tuple[str, str | None]:
    """``(url without any password, the password or None)``.

    Lets a caller keep the password in memory only, and pickle or log the rest.
    """
    password = None
    bounds = _userinfo_bounds(url)
    if bounds is not None:
        start, at = bounds
        user, _, secret = url[start:at].partition(":")
        password = unquote(secret) or None
        url = f"{url[:start]}{user}{url[at:]}"
    base, _, query = url.partition("?")
    kept = []
    for param in query.split("&") if query else ():
        key, _, value = param.partition("=")
        if key == "password":
            password = unquote(value) or password
        else:
            kept.append(param)
    url = base + ("?" + "&".join(kept) if kept else "")
    return url, password


def _with_scheme(url: str, scheme: str) -> str:
    validate_db_url(url)
    return scheme + url[url.index("://") :]


def libpq_url(url: str) -> str:
    """The ``postgresql://`` form psycopg2 accepts (libpq rejects ``postgresql+psycopg2://``)."""
    return _with_scheme(url, "postgresql")


def sqlalchemy_url(url: str) -> str:
    """The ``postgresql+psycopg2://`` form for Optuna's RDB storage.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed.
    """
    return _with_scheme(url, "postgresql+psycopg2")


def connect_check(url: str, *, password: str | None = None) -> None:
    """Open and close one connection, or raise a one-line StoreError saying why not.

    Covers a malformed URL, wrong password, unreachable host and unknown database, each with the
    password masked, after at most :data:`CONNECT_TIMEOUT_S` seconds.
    """
    validate_db_url(url)
    _, url_password = split_password(url)
    kwargs = {"password": password} if password else {}
    try:
        conn = psycopg2.connect(libpq_url(url), connect_timeout=CONNECT_TIMEOUT_S, **kwargs)
    except psycopg2.Error as exc:
        reason = one_line(exc, secrets=(password, url_password))
        raise StoreError(f"cannot connect to PostgreSQL at {mask_url(url)}: {reason}") from None
    conn.close()
