"""PBT lineage events, from the scheduler to the sweep's one writer, inside the driver.

Tune gives callbacks no hook for a PBT exploit. ``sweeps.pbt``'s schedulers publish each
exploit/explore event here, keyed by sweep name, the moment they decide it; ``PostgresCallback``
drains the queue on the same controller step (Tune calls the scheduler, then the callbacks, for
every result) and writes the events to ``mario_sweeps.lineage``. Both live in the driver process,
so a module-level queue survives what pickling cannot: a restored sweep's scheduler and callback
are separate unpickled objects.
"""

from collections import defaultdict
from typing import Any, TypedDict

__all__ = ["LineageEvent", "drain", "publish"]


class LineageEvent(TypedDict):
    """One exploit: ``trial_id`` copied ``donor``'s checkpoint, then explored new values."""

    trial_id: str
    training_iteration: int
    """The member's own (reported) iteration when it was replaced."""
    env_steps: int | None
    donor: str
    donor_iteration: int
    """The donor's iteration in the result PBT last scored it by (as a rule, the copied
    checkpoint's)."""
    donor_env_steps: int | None
    checkpoint: str | None
    metric: float | None
    donor_metric: float | None
    old_params: dict[str, Any]
    donor_params: dict[str, Any]
    new_params: dict[str, Any]


_QUEUES: defaultdict[str, list[LineageEvent]] = defaultdict(list)


def publish(sweep: str, event: LineageEvent) -> None:
    _QUEUES[sweep].append(event)


def drain(sweep: str) -> list[LineageEvent]:
    """The events published for ``sweep`` since the last drain, in order."""
    return _QUEUES.pop(sweep, [])
