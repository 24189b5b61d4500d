"""What every command of the project shares on its command line: one-line errors and the
results store's ``--db-url``.

Kept apart from ``sweeps.options`` (which builds trials and imports RLlib and torch), so that the
commands that only read the store (``python -m sweeps.report``) start in a second.
"""

import argparse

from callbacks.store import StoreError, embedded_db_url, resolve_db_url, validate_db_url

PASSWORD_ADVICE = "put database passwords in PGPASSWORD or ~/.pgpass, not in --db-url"


class SweepError(ValueError):
    """A flag or configuration value the sweep cannot run with (reported in one line)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are ``SweepError`` (one line, exit 2) instead of a usage block."""

    def error(self, message: str):
        raise SweepError(message)


def add_db_url_flag(parser: argparse.ArgumentParser) -> None:
    """``--db-url``, as every command that reads or writes the results store takes it."""
    parser.add_argument(
        "--db-url",
        help="PostgreSQL URL for results (default: MARIO_SWEEPS_DB_URL, else embedded "
        f"PostgreSQL); {PASSWORD_ADVICE}",
    )


def given_db_url(args: argparse.Namespace) -> str | None:
    """``--db-url``, else MARIO_SWEEPS_DB_URL, checked; None: neither (the embedded server)."""
    db_url = resolve_db_url(args.db_url)
    if db_url is not None:
        try:
            validate_db_url(db_url)
        except StoreError as err:
            raise SweepError(f"--db-url: {err}") from None
    return db_url


def db_url_of(args: argparse.Namespace) -> str:
    """The results store a command reads: :func:`given_db_url`, else the embedded server's."""
    return given_db_url(args) or embedded_db_url()
