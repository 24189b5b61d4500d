"""``sweeps.schedule.Schedule``: the scheduler decided once from the options, stored on the sweep
row and read back by the report; and ``sweeps.leaderboard.params_text``, the one way params are
written."""

import doctest

import pytest

from sweeps import leaderboard, schedule
from sweeps.options import parse_options
from sweeps.schedule import Schedule
from sweeps.spec import Asha, Pbt, Sweep

SWEEP = Sweep(
    name="sched",
    algo="PPO",
    search_space={},
    max_env_steps=200_000,
    num_samples=4,
    asha=Asha(grace_period=50_000, reduction_factor=2),
)


def test_doctests():
    assert doctest.testmod(schedule).failed == 0
    assert doctest.testmod(leaderboard).failed == 0


@pytest.mark.parametrize(
    "made",
    [
        Schedule("asha", 200_000, asha=Asha(50_000, 2)),
        Schedule("pbt", 200_000, pbt=Pbt(population=4, perturbation_interval=1_000)),
        Schedule("pb2", 200_000, pbt=Pbt(population=3)),
        Schedule("fifo", 200_000, stage="confirm"),
    ],
)
def test_a_stored_schedule_reads_back_as_the_one_that_ran(made):
    assert Schedule.from_record(made.record()) == made
    assert made.record()["type"] == made.kind.upper()


def test_the_options_decide_the_schedule_once():
    asha = parse_options(SWEEP, []).schedule
    assert asha.kind == "asha" and not asha.population and asha.stop_reason == "asha"
    assert asha.asha_rungs() == [50_000, 100_000, 200_000]
    assert asha.confirm() == Schedule("fifo", 200_000, stage="confirm")
    # A budget below the first rung moves it to the budget: ASHA stops nothing early.
    assert parse_options(SWEEP, ["--max-env-steps", "20000"]).schedule.asha_rungs() == [20_000]
    pbt = parse_options(SWEEP, ["--scheduler", "pbt", "--population", "3"]).schedule
    assert pbt.population and pbt.stop_reason == "pbt" and pbt.pbt.population == 3
    assert pbt.asha_rungs() == [] and "PBT: population 3" in pbt.describe(max_concurrent=2)


@pytest.mark.parametrize(
    "record", [None, {}, {"type": "ASHA"}, {"type": "ASHA", "grace_period": "x", "max_t": 9}]
)
def test_a_row_without_a_readable_schedule_reads_as_none(record):
    assert Schedule.from_record(record) is None


def test_a_schedule_refuses_settings_of_another_kind():
    with pytest.raises(ValueError):
        Schedule("asha", 1_000, pbt=Pbt())
    with pytest.raises(ValueError):
        Schedule("pbt", 1_000)
