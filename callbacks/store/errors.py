"""The results store's own exceptions, so callers never need to know psycopg2's hierarchy."""

from collections.abc import Iterable

__all__ = ["StoreError", "StoreUnavailable", "one_line"]


class StoreError(RuntimeError):
    """A results-store failure, explained in one line with any password masked."""


class StoreUnavailable(StoreError):
    """PostgreSQL could not be reached or the connection broke: trying again later may succeed."""


def one_line(exc: BaseException, *, secrets: Iterable[str | None] = ()) -> str:
    """``exc``'s message on one line, with every non-empty secret replaced by ``***``.

    libpq's messages span several lines ("connection to server ... failed: FATAL: ...\\n\\tIs the
    server running ..."); a CLI error should be a single line.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
