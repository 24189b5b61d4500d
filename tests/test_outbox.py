"""The outbox on its own: order, backoff, versioned spill files, refusals and unwritable disks.

``send`` here is a list that can be told to be unreachable or to refuse a kind of row: the outbox
is the system under test and needs no database to be exercised.
"""

import json
import logging

import pytest

from callbacks.store.errors import StoreError, StoreUnavailable
from callbacks.store.outbox import SPILL_FORMAT, Outbox, SpillFormatError

LOGGER = "callbacks.store.outbox"


class Destination:
    """Where sent ops land; ``away`` makes it unreachable, ``refuse`` rejects one kind."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.away = False
        self.refuse: str | None = None

    def __call__(self, ops: list[dict]) -> None:
        if self.away:
            raise StoreUnavailable("lost the database")
        if any(op["kind"] == self.refuse for op in ops):
            raise StoreError(f"refused {self.refuse}")
        self.sent.extend(ops)

    def rows(self) -> list:
        return [row for op in self.sent for row in op["rows"]]


def outbox(tmp_path, destination, **options) -> Outbox:
    return Outbox(
        destination,
        spill_path=tmp_path / "spill" / "sweep-1.jsonl",
        rejected_path=tmp_path / "spill" / "sweep-1.rejected.jsonl",
        retry_interval_s=0,
        **options,
    )


def test_ops_are_sent_at_once_and_in_order(tmp_path):
    destination = Destination()
    box = outbox(tmp_path, destination)
    for i in range(3):
        box.submit("episodes", [{"n": i}])
    assert destination.rows() == [{"n": 0}, {"n": 1}, {"n": 2}] and box.pending_rows == 0


def test_an_outage_buffers_in_order_warns_once_and_sends_when_the_destination_is_back(
    tmp_path, caplog
):
    destination = Destination()
    box = outbox(tmp_path, destination)
    destination.away = True
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(5):
            box.submit("episodes", [{"n": i}])
    assert box.pending_rows == 5 and destination.sent == []
    destination.away = False
    box.submit("episodes", [{"n": 5}])
    assert destination.rows() == [{"n": i} for i in range(6)]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_retry_waits_for_its_delay_so_an_outage_costs_one_attempt_per_delay(tmp_path):
    attempts = []

    def away(ops):
        attempts.append(len(ops))
        raise StoreUnavailable("down")

    box = Outbox(
        away,
        spill_path=tmp_path / "s.jsonl",
        rejected_path=tmp_path / "r.jsonl",
        retry_interval_s=3600,
    )
    for i in range(10):
        box.submit("episodes", [{"n": i}])
    assert len(attempts) == 1 and box.pending_rows == 10


def test_a_full_buffer_spills_to_a_versioned_file_that_a_later_outbox_replays_first(tmp_path):
    destination = Destination()
    destination.away = True
    box = outbox(tmp_path, destination, max_buffer_rows=3)
    for i in range(5):
        box.submit("episodes", [{"n": i}])
    lines = box.spill_path.read_text().splitlines()
    assert json.loads(lines[0]) == SPILL_FORMAT and len(lines) > 1
    box.close(timeout_s=0)

    destination.away = False
    later = outbox(tmp_path, destination)
    assert later.pending_rows == 5
    later.submit("episodes", [{"n": 5}])
    assert destination.rows() == [{"n": i} for i in range(6)]
    assert not later.spill_path.exists()


def test_a_spill_file_of_another_format_version_is_refused_by_name(tmp_path):
    path = tmp_path / "spill" / "sweep-1.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({**SPILL_FORMAT, "version": 99}) + "\n{}\n")
    with pytest.raises(SpillFormatError, match="sweep-1.jsonl is not a spill file of this version"):
        outbox(tmp_path, Destination())


def test_refused_ops_go_to_the_rejected_file_and_the_others_are_still_sent(tmp_path):
    destination = Destination()
    destination.refuse = "trials"
    box = outbox(tmp_path, destination)
    destination.away = True
    box.submit("episodes", [{"n": 1}])
    box.submit("trials", [{"t": "bad"}])
    box.submit("episodes", [{"n": 2}])
    destination.away = False
    assert box.flush(timeout_s=1) == 0
    assert destination.rows() == [{"n": 1}, {"n": 2}]
    rejected = box.rejected_path.read_text().splitlines()
    assert json.loads(rejected[1])["rows"] == [{"t": "bad"}] and box.rejected_rows == 1


def unspillable(tmp_path, destination, *, max_buffer_rows: int) -> Outbox:
    """An outbox whose spill path is under a regular file: nobody, root included, can create it."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return Outbox(
        destination,
        spill_path=blocker / "sweep-1.jsonl",
        rejected_path=tmp_path / "rejected.jsonl",
        retry_interval_s=0,
        max_buffer_rows=max_buffer_rows,
    )


def test_an_unwritable_spill_file_warns_once_keeps_rows_in_memory_and_counts_what_is_lost(
    tmp_path, caplog
):
    destination = Destination()
    destination.away = True
    box = unspillable(tmp_path, destination, max_buffer_rows=2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(6):
            box.submit("episodes", [{"n": i}])
        assert box.pending_rows == 6 and box.lost_rows == 0  # nothing lost while memory holds
        assert box.close(timeout_s=0) == 6
    assert box.lost_rows == 6
    spill_warnings = [r for r in caplog.records if "cannot write the spill file" in r.message]
    assert len(spill_warnings) == 1
    assert "6 result rows were LOST" in caplog.text


def test_past_ten_buffers_in_memory_the_oldest_rows_are_dropped_and_counted(tmp_path):
    destination = Destination()
    destination.away = True
    box = unspillable(tmp_path, destination, max_buffer_rows=1)
    for i in range(15):
        box.submit("episodes", [{"n": i}])
    assert box.lost_rows == 5 and box.pending_rows == 10
    destination.away = False
    box.flush(timeout_s=1)
    assert destination.rows() == [{"n": i} for i in range(5, 15)]
