"""PostgresCallback against a real PostgreSQL, driven hook by hook and then by a real Tuner."""

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
import ray.cloudpickle
from ray import tune

from callbacks.postgres_callback import PostgresCallback
from callbacks.store.writer import ResultsStore

METRIC = "mario/return_smoothed"
BUDGET = 1_000


@dataclass
class FakeTrial:
    """The attributes of ``ray.tune.experiment.Trial`` the callback reads."""

    trial_id: str
    config: dict = field(default_factory=lambda: {"lr": 1e-4, "env": dict, "gamma": 0.99})
    error_file: str | None = None


class ReasonStopper:
    """Stands in for the collapse detector: it knows why it stopped which trial."""

    def __init__(self, reasons: dict[str, str]) -> None:
        self.reasons = reasons

    def stop_reason(self, trial_id: str) -> str | None:
        return self.reasons.get(trial_id)


def query(url: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def episode(episode_id: str) -> dict:
    return {
        "episode_id": episode_id,
        "env_runner": 1,
        "env_index": 0,
        "return": 4.0,
        "length": 120,
        "x_pos": 300,
        "x_pos_max": 320,
        "flag_get": False,
        "score": 0,
        "coins": 0,
        "time_left": None,
        "world": 1,
        "stage": 1,
        "life": 2,
        "status": None,
        "game": "SuperMarioBros",
        "task_id": "SuperMarioBros-1-1-v0",
    }


def result(iteration: int, *, metric: float, env_steps: int, episodes: list | None) -> dict:
    out = {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": float(env_steps),
        "time_total_s": float(iteration),
        "node_ip": "10.0.0.7",
        "config": {"lr": 1e-4},
        "mario": {"return_smoothed": metric, "x_pos_smoothed": 300.0, "episodes": 2},
    }
    if episodes is not None:
        out["mario_episodes"] = episodes
    return out


def make_callback(url: str, tmp_path: Path, *, resume: bool = False, **options) -> PostgresCallback:
    with ResultsStore(url, spill_dir=tmp_path) as store:
        sweep_id = store.start_sweep(
            name="sweep", algo="PPO", search_space={}, metric=METRIC, mode="max", resume=resume
        )
    defaults = {"metric": METRIC, "mode": "max", "max_env_steps": BUDGET, "spill_dir": tmp_path}
    callback = PostgresCallback(db_url=url, sweep_id=sweep_id, **{**defaults, **options})
    callback.setup()
    return callback


def run_trial(callback: PostgresCallback, trial: FakeTrial, metrics: list[float], steps: int):
    callback.on_trial_start(0, [trial], trial)
    for iteration, metric in enumerate(metrics, start=1):
        episodes = [episode(f"{trial.trial_id}-{iteration}-{k}") for k in range(2)]
        callback.on_trial_result(
            0, [trial], trial, result(iteration, metric=metric, env_steps=steps, episodes=episodes)
        )


@pytest.fixture
def callback(fresh_db_url, tmp_path):
    callback = make_callback(fresh_db_url, tmp_path)
    yield callback
    callback.on_experiment_end([])


def test_the_episode_list_is_popped_out_of_the_result(callback):
    trial = FakeTrial("t1")
    callback.on_trial_start(0, [trial], trial)
    delivered = result(1, metric=1.0, env_steps=100, episodes=[episode("e1")])
    callback.on_trial_result(0, [trial], trial, delivered)
    assert "mario_episodes" not in delivered


def test_a_result_writes_its_iteration_and_its_episodes_with_the_iteration_number(
    callback, fresh_db_url
):
    run_trial(callback, FakeTrial("t1"), [1.0, 2.0], steps=100)
    assert query(
        fresh_db_url,
        "SELECT training_iteration, count(*) FROM mario_sweeps.episodes GROUP BY 1 ORDER BY 1",
    ) == [(1, 2), (2, 2)]


def test_a_result_without_an_episode_list_still_writes_its_iteration(callback, fresh_db_url):
    trial = FakeTrial("t1")
    callback.on_trial_start(0, [trial], trial)
    callback.on_trial_result(0, [trial], trial, result(1, metric=1.0, env_steps=1, episodes=None))
    callback.on_trial_result(0, [trial], trial, result(2, metric=1.0, env_steps=2, episodes=[]))
    assert query(fresh_db_url, "SELECT count(*) FROM mario_sweeps.iterations") == [(2,)]


def test_params_hold_only_the_searched_keys(fresh_db_url, tmp_path):
    callback = make_callback(fresh_db_url, tmp_path, param_keys=["lr", "model/hidden"])
    trial = FakeTrial("t1", config={"lr": 0.01, "env": dict, "model": {"hidden": 64}})
    callback.on_trial_start(0, [trial], trial)
    callback.on_experiment_end([])
    assert query(fresh_db_url, "SELECT params FROM mario_sweeps.trials") == [
        ({"lr": 0.01, "model/hidden": 64},)
    ]


def test_a_whole_config_with_classes_is_stored_as_json(callback, fresh_db_url):
    trial = FakeTrial("t1")
    callback.on_trial_start(0, [trial], trial)
    assert query(fresh_db_url, "SELECT params->>'env' FROM mario_sweeps.trials") == [
        ("builtins.dict",)
    ]


def stop_reason(url: str) -> list[tuple]:
    return query(url, "SELECT trial_id, status, stop_reason FROM mario_sweeps.trials")


def test_a_trial_that_used_its_whole_budget_stopped_as_completed(callback, fresh_db_url):
    trial = FakeTrial("t1")
    run_trial(callback, trial, [1.0], steps=BUDGET)
    callback.on_trial_complete(0, [trial], trial)
    assert stop_reason(fresh_db_url) == [("t1", "terminated", "completed")]


def test_a_trial_that_ended_before_its_budget_was_stopped_by_asha(callback, fresh_db_url):
    trial = FakeTrial("t1")
    run_trial(callback, trial, [1.0], steps=BUDGET // 2)
    callback.on_trial_complete(0, [trial], trial)
    assert stop_reason(fresh_db_url) == [("t1", "terminated", "asha")]


def test_the_stoppers_own_reason_wins(fresh_db_url, tmp_path):
    callback = make_callback(fresh_db_url, tmp_path, stopper=ReasonStopper({"t1": "collapse"}))
    trial = FakeTrial("t1")
    run_trial(callback, trial, [1.0], steps=BUDGET // 2)
    callback.on_trial_complete(0, [trial], trial)
    callback.on_experiment_end([])
    assert stop_reason(fresh_db_url) == [("t1", "terminated", "collapse")]


def test_an_errored_trial_records_the_error_and_its_traceback(callback, fresh_db_url, tmp_path):
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nRuntimeError: emulator crashed")
    trial = FakeTrial("t1", error_file=str(error_file))
    run_trial(callback, trial, [1.0], steps=10)
    callback.on_trial_error(0, [trial], trial)
    assert query(fresh_db_url, "SELECT status, stop_reason, error FROM mario_sweeps.trials") == [
        ("error", "error", "Traceback ...\nRuntimeError: emulator crashed")
    ]


def test_the_best_checkpoint_is_the_one_saved_at_the_best_metric(callback, fresh_db_url, tmp_path):
    trial = FakeTrial("t1")
    callback.on_trial_start(0, [trial], trial)
    for iteration, metric in enumerate([5.0, 9.0, 7.0], start=1):
        callback.on_trial_result(
            0, [trial], trial, result(iteration, metric=metric, env_steps=BUDGET, episodes=[])
        )
        directory = tmp_path / f"checkpoint_{iteration}"
        directory.mkdir()
        callback.on_checkpoint(0, [trial], trial, tune.Checkpoint.from_directory(directory))
    callback.on_trial_complete(0, [trial], trial)
    assert query(fresh_db_url, "SELECT best_metric, best_checkpoint FROM mario_sweeps.trials") == [
        (9.0, str(tmp_path / "checkpoint_2"))
    ]


def test_in_min_mode_the_best_metric_is_the_lowest(fresh_db_url, tmp_path):
    callback = make_callback(fresh_db_url, tmp_path, mode="min")
    run_trial(callback, FakeTrial("t1"), [5.0, 2.0, 3.0], steps=10)
    callback.on_experiment_end([])
    assert query(fresh_db_url, "SELECT best_metric FROM mario_sweeps.trials") == [(2.0,)]


def url_with_password(url: str, password: str) -> str:
    return url.replace("postgres:@", f"postgres:{password}@")


def test_a_pickled_callback_holds_neither_its_connection_nor_a_password(fresh_db_url, tmp_path):
    callback = make_callback(url_with_password(fresh_db_url, "pw-in-url-77"), tmp_path)
    data = ray.cloudpickle.dumps(callback)
    callback.on_experiment_end([])
    assert b"pw-in-url-77" not in data
    assert ray.cloudpickle.loads(data)._store is None


def test_an_unpickled_callback_writes_after_setup(fresh_db_url, tmp_path):
    callback = make_callback(url_with_password(fresh_db_url, "pw-in-url-77"), tmp_path)
    restored = ray.cloudpickle.loads(ray.cloudpickle.dumps(callback))
    callback.on_experiment_end([])
    restored.setup()
    restored.on_trial_start(0, [], FakeTrial("t1"))
    restored.on_experiment_end([])
    assert query(fresh_db_url, "SELECT trial_id FROM mario_sweeps.trials") == [("t1",)]


def test_best_metric_survives_a_restore_through_get_state_and_set_state(fresh_db_url, tmp_path):
    callback = make_callback(fresh_db_url, tmp_path)
    trial = FakeTrial("t1")
    run_trial(callback, trial, [9.0], steps=10)
    state = json.loads(json.dumps(callback.get_state()))
    callback.on_experiment_end([])

    restored = make_callback(fresh_db_url, tmp_path, resume=True)
    restored.set_state(state)
    restored.on_trial_result(0, [trial], trial, result(2, metric=3.0, env_steps=20, episodes=[]))
    restored.on_experiment_end([])
    assert query(fresh_db_url, "SELECT best_metric FROM mario_sweeps.trials") == [(9.0,)]


class CollapseAtSecondIteration(tune.Stopper):
    """Stops the trial with lr 0.2 at its second iteration and says why, as CollapseStopper will."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        if result["config"]["lr"] == 0.2 and result["training_iteration"] >= 2:
            self.reasons[trial_id] = "collapse"
        return trial_id in self.reasons

    def stop_all(self) -> bool:
        return False

    def stop_reason(self, trial_id: str) -> str | None:
        return self.reasons.get(trial_id)


def fake_mario_trainable(config: dict) -> None:
    trial_id = tune.get_context().get_trial_id()
    for iteration in range(1, 4):
        metrics = {
            "num_env_steps_sampled_lifetime": float(100 * iteration),
            "mario": {"return_smoothed": config["lr"] * iteration, "episodes": 2},
            "mario_episodes": [episode(f"{trial_id}-{iteration}-{k}") for k in range(2)],
        }
        if iteration == 2:
            with tempfile.TemporaryDirectory() as directory:
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)


@pytest.mark.slow
def test_a_real_tune_run_records_every_trial_iteration_episode_and_stop_reason(
    ray_session, fresh_db_url, tmp_path
):
    stopper = CollapseAtSecondIteration()
    with ResultsStore(fresh_db_url, spill_dir=tmp_path) as store:
        sweep_id = store.start_sweep(
            name="tune", algo="fake", search_space={"lr": [0.1, 0.2]}, metric=METRIC, mode="max"
        )
    callback = PostgresCallback(
        db_url=fresh_db_url,
        sweep_id=sweep_id,
        metric=METRIC,
        mode="max",
        max_env_steps=300,
        stopper=stopper,
        param_keys=["lr"],
        spill_dir=tmp_path,
    )
    tuner = tune.Tuner(
        fake_mario_trainable,
        param_space={"lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(metric=METRIC, mode="max"),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(tmp_path / "ray"), callbacks=[callback], stop=stopper
        ),
    )
    # Ray workers cannot import this test module: ship the trainable's code by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        assert not tuner.fit().errors
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])

    assert query(
        fresh_db_url,
        "SELECT params->>'lr', stop_reason, best_checkpoint IS NOT NULL, "
        " (SELECT count(*) FROM mario_sweeps.iterations i WHERE i.trial_id = t.trial_id),"
        " (SELECT count(*) FROM mario_sweeps.episodes e WHERE e.trial_id = t.trial_id)"
        " FROM mario_sweeps.trials t ORDER BY 1",
    ) == [("0.1", "completed", True, 3, 6), ("0.2", "collapse", True, 2, 4)]
    logged = "".join(p.read_text() for p in (tmp_path / "ray").rglob("result.json"))
    assert "episode_id" not in logged and '"mario"' in logged
