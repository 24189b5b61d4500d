"""Collapse detection: a trial that rose then fell apart is stopped, with the reason recorded."""

import cloudpickle
import pytest
from ray import tune

from callbacks.collapse import Collapse, CollapseDetector, SweepStopper, stop_reason
from callbacks.postgres_callback import PostgresCallback
from callbacks.store import connect, prepare_database

RISE_THEN_FALL = [100, 200, 400, 800, 800, 700, 300, 250, 200, 200, 200, 200]


def feed(detector: CollapseDetector, series) -> int | None:
    """Index at which the detector declares collapse, or None."""
    for i, value in enumerate(series):
        if detector.update(value):
            return i
    return None


def test_series_that_rises_then_falls_below_the_drop_for_the_window_collapses():
    # Peak 800; threshold 400 at drop 0.5; below from index 6 on; window 3 -> index 8.
    assert feed(CollapseDetector(Collapse(drop_fraction=0.5, window=3)), RISE_THEN_FALL) == 8


def test_rising_series_never_collapses():
    assert feed(CollapseDetector(Collapse(drop_fraction=0.1, window=1)), range(1, 50)) is None


def test_a_dip_shorter_than_the_window_is_not_a_collapse():
    series = [100, 800, 300, 300, 800, 300, 300, 800]
    assert feed(CollapseDetector(Collapse(drop_fraction=0.5, window=3)), series) is None


def test_a_trial_that_never_learned_cannot_collapse():
    assert (
        feed(
            CollapseDetector(Collapse(drop_fraction=0.5, window=2, min_peak=50)), [40, 10, 5, 1, 0]
        )
        is None
    )


def test_min_mode_watches_for_a_rise():
    losses = [10, 5, 2, 1, 1, 3, 4, 5]
    assert feed(CollapseDetector(Collapse(drop_fraction=0.5, window=2), mode="min"), losses) == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop_fraction": 1.5}, "drop_fraction=1.5 is invalid; allowed: 0 < x < 1"),
        ({"window": 0}, "window=0 is invalid"),
        ({"mode": "up"}, "mode='up' is invalid"),
    ],
)
def test_bad_collapse_settings_fail_with_their_message(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("<", "<")):
        mode = kwargs.pop("mode", "max")
        CollapseDetector(Collapse(**kwargs), mode)


def test_stopper_marks_budget_and_collapse_reasons():
    stopper = SweepStopper(
        metric="mario/x",
        max_env_steps=1_000,
        collapse=Collapse(drop_fraction=0.5, window=2, grace_env_steps=0),
    )
    budget = {"num_env_steps_sampled_lifetime": 1_000, "mario/x": 5.0}
    assert stopper("a", budget) and stop_reason(budget) == "completed"
    results = [
        {"num_env_steps_sampled_lifetime": i * 10, "mario/x": v}
        for i, v in enumerate([10, 100, 20, 20], start=1)
    ]
    assert [stopper("b", r) for r in results] == [False, False, False, True]
    assert stop_reason(results[-1]) == "collapse"
    assert stop_reason(results[0]) == "asha"  # a trial that ended without the stopper's reason


def test_grace_period_defers_the_collapse_verdict():
    stopper = SweepStopper(
        metric="m",
        max_env_steps=10**6,
        collapse=Collapse(drop_fraction=0.5, window=1, grace_env_steps=100),
    )
    early = [{"num_env_steps_sampled_lifetime": s, "m": v} for s, v in [(10, 50), (20, 5)]]
    assert not any(stopper("t", r) for r in early)
    assert stopper("t", {"num_env_steps_sampled_lifetime": 150, "m": 5})


def rises_then_collapses(config):
    """A synthetic trainable: the smoothed metric climbs, peaks, then falls apart."""
    for i, value in enumerate(RISE_THEN_FALL, start=1):
        tune.report({"num_env_steps_sampled_lifetime": i * 100, "mario/x_pos_smoothed": value})


@pytest.mark.slow
def test_real_tune_run_stops_the_collapsing_trial_and_the_store_says_collapse(
    ray_session, fresh_db_url, tmp_path
):
    cloudpickle.register_pickle_by_value(__import__(__name__))
    prepare_database(fresh_db_url)
    stopper = SweepStopper(
        metric="mario/x_pos_smoothed",
        max_env_steps=10_000,
        collapse=Collapse(drop_fraction=0.5, window=3, grace_env_steps=0),
    )
    sweep = {
        "name": "collapse",
        "algo": "synthetic",
        "search_space": {},
        "metric": "mario/x_pos_smoothed",
        "mode": "max",
    }
    results = tune.Tuner(
        rises_then_collapses,
        run_config=tune.RunConfig(
            storage_path=str(tmp_path),
            stop=stopper,
            callbacks=[PostgresCallback(db_url=fresh_db_url, sweep=sweep)],
            verbose=0,
        ),
    ).fit()
    last = results[0].metrics
    assert last["training_iteration"] == 9 < len(RISE_THEN_FALL)
    assert last["stop_reason"] == "collapse"
    with connect(fresh_db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT stop_reason, best_metric FROM mario_sweeps.trials")
        assert cur.fetchall() == [("collapse", 800.0)]


def test_recent_episode_mean_covers_exactly_the_last_n_episodes_across_iterations():
    from callbacks.episode_recorder import EpisodeRecorder
    from callbacks.records import EPISODES_KEY

    recorder = EpisodeRecorder(recent_episodes=(3,))
    seen = []
    for x_pos in ([100, 200], [], [300, 400, 500], [600]):
        records = [{"episode_return": 1.0, "x_pos_max": x, "flag_get": False} for x in x_pos]
        result = {"env_runners": {EPISODES_KEY: records}}
        recorder.on_train_result(result=result)
        seen.append(result["mario/x_pos_last3"])
    # Fewer than 3 at the start; carried through an iteration without episodes.
    assert seen == [150, 150, 400, 500]
