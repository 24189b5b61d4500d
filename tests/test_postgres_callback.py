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

from callbacks.lineage import LineageEvent, publish
from callbacks.postgres_callback import PostgresCallback
from callbacks.store import prepare_database

METRIC = "mario/return_smoothed"
BUDGET = 1_000


@dataclass
class FakeTrial:
    """The attributes of ``ray.tune.experiment.Trial`` the callback reads."""

    trial_id: str
    config: dict = field(default_factory=lambda: {"lr": 1e-4, "env": dict, "gamma": 0.99})
    error_file: str | None = None
    status: str = "RUNNING"
    last_result: dict = field(default_factory=dict)


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
        "training_iteration": None,
        "env_runner": 1,
        "env_index": 0,
        "episode_return": 4.0,
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
        "mario/return_smoothed": metric,
        "mario/x_pos_smoothed": 300.0,
        "mario/episodes": 2,
    }
    if episodes is not None:
        out["mario_episodes"] = [{**e, "training_iteration": iteration} for e in episodes]
    return out


def sweep_row(mode: str = "max", **fields) -> dict:
    return {
        "name": "sweep",
        "algo": "PPO",
        "search_space": {},
        "metric": METRIC,
        "mode": mode,
        **fields,
    }


def make_callback(url: str, tmp_path: Path, *, mode: str = "max", state=None, **options):
    """A callback as Tune drives it: built, (restored,) set up."""
    prepare_database(url)
    callback = PostgresCallback(db_url=url, sweep=sweep_row(mode), spill_dir=tmp_path, **options)
    if state is not None:
        callback.set_state(state)
    callback.setup()
    return callback


def run_trial(
    callback: PostgresCallback,
    trial: FakeTrial,
    metrics: list[float],
    steps: int,
    stop_reason: str | None = None,
):
    """Deliver results as Tune does: the stopper writes its reason into the last one."""
    callback.on_trial_start(0, [trial], trial)
    for iteration, metric in enumerate(metrics, start=1):
        episodes = [episode(f"{trial.trial_id}-{iteration}-{k}") for k in range(2)]
        delivered = result(iteration, metric=metric, env_steps=steps, episodes=episodes)
        if stop_reason is not None and iteration == len(metrics):
            delivered["stop_reason"] = stop_reason
        callback.on_trial_result(0, [trial], trial, delivered)
        trial.last_result = delivered


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


def test_a_trial_the_stopper_ended_at_its_budget_stopped_as_completed(callback, fresh_db_url):
    trial = FakeTrial("t1")
    run_trial(callback, trial, [1.0], steps=BUDGET, stop_reason="completed")
    callback.on_trial_complete(0, [trial], trial)
    assert stop_reason(fresh_db_url) == [("t1", "terminated", "completed")]


def test_a_trial_that_ended_without_a_stoppers_reason_was_stopped_by_asha(callback, fresh_db_url):
    trial = FakeTrial("t1")
    run_trial(callback, trial, [1.0], steps=BUDGET // 2)
    callback.on_trial_complete(0, [trial], trial)
    assert stop_reason(fresh_db_url) == [("t1", "terminated", "asha")]


def test_the_stoppers_own_reason_wins(fresh_db_url, tmp_path):
    callback = make_callback(fresh_db_url, tmp_path)
    trial = FakeTrial("t1")
    run_trial(callback, trial, [1.0], steps=BUDGET // 2, stop_reason="collapse")
    callback.on_trial_complete(0, [trial], trial)
    callback.on_experiment_end([])
    assert stop_reason(fresh_db_url) == [("t1", "terminated", "collapse")]


def test_the_sweep_row_is_written_only_when_tune_sets_the_callback_up(fresh_db_url, tmp_path):
    prepare_database(fresh_db_url)
    callback = PostgresCallback(db_url=fresh_db_url, sweep=sweep_row(), spill_dir=tmp_path)
    assert query(fresh_db_url, "SELECT count(*) FROM mario_sweeps.sweeps") == [(0,)]
    callback.setup()
    callback.on_experiment_end([])
    assert query(fresh_db_url, "SELECT name, status FROM mario_sweeps.sweeps") == [
        ("sweep", "finished")
    ]


def test_an_interrupted_experiment_marks_its_unfinished_trials_and_the_sweep_interrupted(
    callback, fresh_db_url
):
    done, running = FakeTrial("t1", status="TERMINATED"), FakeTrial("t2")
    run_trial(callback, done, [1.0], steps=BUDGET, stop_reason="completed")
    callback.on_trial_complete(0, [done], done)
    run_trial(callback, running, [1.0], steps=10)
    callback.on_experiment_end([done, running, FakeTrial("never-started", status="PENDING")])
    assert sorted(stop_reason(fresh_db_url)) == [
        ("t1", "terminated", "completed"),
        ("t2", "interrupted", "interrupted"),
    ]
    assert query(fresh_db_url, "SELECT status FROM mario_sweeps.sweeps") == [("interrupted",)]


def test_a_sweep_whose_every_trial_errored_is_failed(callback, fresh_db_url):
    trial = FakeTrial("t1", status="ERROR")
    run_trial(callback, trial, [1.0], steps=10)
    callback.on_trial_error(0, [trial], trial)
    callback.on_experiment_end([trial])
    assert query(fresh_db_url, "SELECT status FROM mario_sweeps.sweeps") == [("failed",)]


def test_an_errored_trial_records_the_error_and_its_traceback(callback, fresh_db_url, tmp_path):
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nRuntimeError: emulator crashed")
    trial = FakeTrial("t1", error_file=str(error_file))
    run_trial(callback, trial, [1.0], steps=10)
    callback.on_trial_error(0, [trial], trial)
    assert query(fresh_db_url, "SELECT status, stop_reason, error FROM mario_sweeps.trials") == [
        ("error", "error", "Traceback ...\nRuntimeError: emulator crashed")
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


def evaluation(iteration: int, env_steps: int, x_pos: list[int]) -> list[dict]:
    """What ``PeriodicEvaluation`` puts into an evaluated result: its episodes, less checkpoint."""
    return [
        {
            "policy": "greedy",
            "episode": k,
            "task_id": "SuperMarioBros-1-1-v0",
            "episode_return": 1.0,
            "x_pos": x,
            "flag_get": False,
            "length": 50,
            "video": None,
            "protocol": "greedy, sticky 0.25, 0-30 no-op starts",
            "env_steps": env_steps,
            "training_iteration": iteration,
        }
        for k, x in enumerate(x_pos)
    ]


@dataclass
class FakeCheckpoint:
    path: str


_PLAYED = (
    "SELECT training_iteration, env_steps, checkpoint, array_agg(x_pos ORDER BY episode)"
    " FROM mario_sweeps.evaluations GROUP BY 1, 2, 3 ORDER BY 1"
)


def test_an_evaluation_during_training_is_stored_with_the_checkpoint_tune_saved_for_it(
    fresh_db_url, tmp_path
):
    """Held until Tune's on_checkpoint names the checkpoint; one Tune never saved is stored as
    NOT_SAVED at the end; a replayed iteration's evaluation is rewound with it."""
    from callbacks.postgres_callback import NOT_SAVED

    callback = make_callback(fresh_db_url, tmp_path)
    trial = FakeTrial("t1")
    callback.on_trial_start(0, [trial], trial)
    for iteration, x_pos in ((1, [300, 310]), (2, [700, 710])):
        delivered = result(iteration, metric=1.0, env_steps=100 * iteration, episodes=[])
        delivered["mario_evaluation"] = evaluation(iteration, 100 * iteration, x_pos)
        callback.on_trial_result(0, [trial], trial, delivered)
        assert "mario_evaluation" not in delivered
        if iteration == 1:
            callback.on_checkpoint(0, [trial], trial, FakeCheckpoint("/x/checkpoint_000000"))
    state = callback.get_state()
    callback.on_experiment_end([trial])
    assert query(fresh_db_url, _PLAYED) == [
        (1, 100, "/x/checkpoint_000000", [300, 310]),
        (2, 200, NOT_SAVED, [700, 710]),
    ]
    # Restored from the first checkpoint, the trial replays iteration 2 and plays it again.
    restored = make_callback(fresh_db_url, tmp_path, state=state)
    restored.on_trial_start(0, [trial], trial)
    delivered = result(2, metric=1.0, env_steps=200, episodes=[])
    delivered["mario_evaluation"] = evaluation(2, 200, [800, 810])
    restored.on_trial_result(0, [trial], trial, delivered)
    restored.on_checkpoint(0, [trial], trial, FakeCheckpoint("/x/checkpoint_000001"))
    restored.on_experiment_end([trial])
    assert query(fresh_db_url, _PLAYED) == [
        (1, 100, "/x/checkpoint_000000", [300, 310]),
        (2, 200, "/x/checkpoint_000001", [800, 810]),
    ]


def test_a_restore_reopens_the_same_sweep_row_and_keeps_the_best_metric(fresh_db_url, tmp_path):
    callback = make_callback(fresh_db_url, tmp_path)
    trial = FakeTrial("t1")
    run_trial(callback, trial, [9.0], steps=10)
    state = json.loads(json.dumps(callback.get_state()))
    callback.on_experiment_end([trial])

    restored = make_callback(fresh_db_url, tmp_path, state=state)
    restored.on_trial_result(0, [trial], trial, result(2, metric=3.0, env_steps=20, episodes=[]))
    restored.on_experiment_end([])
    assert query(fresh_db_url, "SELECT best_metric FROM mario_sweeps.trials") == [(9.0,)]
    assert query(fresh_db_url, "SELECT id, status FROM mario_sweeps.sweeps") == [
        (state["sweep_id"], "finished")
    ]


def exploit(trial_id: str, *, iteration: int, donor_iteration: int) -> LineageEvent:
    """What ``sweeps.pbt`` publishes when ``trial_id`` copies donor t9's checkpoint."""
    return {
        "trial_id": trial_id,
        "training_iteration": iteration,
        "env_steps": 100 * iteration,
        "donor": "t9",
        "donor_iteration": donor_iteration,
        "donor_env_steps": 100 * donor_iteration,
        "checkpoint": None,
        "metric": 1.0,
        "donor_metric": 2.0,
        "old_params": {"lr": 1e-4},
        "donor_params": {"lr": 2e-4},
        "new_params": {"lr": 3e-4},
    }


@pytest.mark.parametrize("resumed_before_the_next_result", [False, True])
def test_an_exploited_members_next_result_follows_the_exploit_whatever_counter_it_restored(
    fresh_db_url, tmp_path, resumed_before_the_next_result
):
    """PBT scored the donor at its iteration 1, but the checkpoint the member restored holds
    iteration 2: the member's next result reports 3 and is stored as 4, right after the exploit
    at its iteration 3, with or without a resume in between."""
    callback = make_callback(fresh_db_url, tmp_path, lineage=True)
    trial = FakeTrial("t1")
    run_trial(callback, trial, [1.0, 2.0], steps=200)
    publish("sweep", exploit("t1", iteration=3, donor_iteration=1))  # the scheduler, then us
    callback.on_trial_result(0, [trial], trial, result(3, metric=1.0, env_steps=300, episodes=[]))
    if resumed_before_the_next_result:
        state = json.loads(json.dumps(callback.get_state()))
        callback.on_experiment_end([trial])
        callback = make_callback(fresh_db_url, tmp_path, lineage=True, state=state)
    callback.on_trial_start(0, [trial], trial)  # restarted from the donor's checkpoint
    for reported in (3, 4):
        delivered = result(reported, metric=2.0, env_steps=100 * reported, episodes=[])
        callback.on_trial_result(0, [trial], trial, delivered)
    callback.on_experiment_end([])
    stored = "SELECT training_iteration FROM mario_sweeps.{} WHERE trial_id = 't1' ORDER BY 1"
    assert query(fresh_db_url, stored.format("iterations")) == [(1,), (2,), (3,), (4,), (5,)]
    assert query(fresh_db_url, stored.format("lineage")) == [(3,)]


class CollapseAtSecondIteration(tune.Stopper):
    """Stops the trial with lr 0.2 at its second iteration and every trial at 300 env steps, and
    says why, as SweepStopper does."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        if result["config"]["lr"] == 0.2 and result["training_iteration"] >= 2:
            result["stop_reason"] = "collapse"
        elif result["num_env_steps_sampled_lifetime"] >= 300:
            result["stop_reason"] = "completed"
        return "stop_reason" in result

    def stop_all(self) -> bool:
        return False


def fake_mario_trainable(config: dict) -> None:
    trial_id = tune.get_context().get_trial_id()
    for iteration in range(1, 4):
        metrics = {
            "num_env_steps_sampled_lifetime": float(100 * iteration),
            "mario/return_smoothed": config["lr"] * iteration,
            "mario/episodes": 2,
            "mario_episodes": [
                {**episode(f"{trial_id}-{iteration}-{k}"), "training_iteration": iteration}
                for k in range(2)
            ],
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
    prepare_database(fresh_db_url)
    stopper = CollapseAtSecondIteration()
    callback = PostgresCallback(
        db_url=fresh_db_url,
        sweep=sweep_row(name="tune", algo="fake", search_space={"lr": [0.1, 0.2]}),
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
    assert "episode_id" not in logged and '"mario/return_smoothed"' in logged


PEAKS_EARLY = [1.0, 9.0, 3.0, 2.0, 4.0, 5.0]


def checkpoints_every_iteration(config: dict) -> None:
    """The metric peaks at iteration 2 and never comes back: the best checkpoint is the 2nd."""
    for iteration, value in enumerate(PEAKS_EARLY, start=1):
        with tempfile.TemporaryDirectory() as directory:
            tune.report(
                {"mario/return_smoothed": value, "num_env_steps_sampled_lifetime": iteration},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


@pytest.mark.slow
def test_the_recorded_best_checkpoint_is_the_one_tune_kept_for_its_metric(
    ray_session, fresh_db_url, tmp_path
):
    prepare_database(fresh_db_url)
    callback = PostgresCallback(db_url=fresh_db_url, sweep=sweep_row(), spill_dir=tmp_path)
    tuner = tune.Tuner(
        checkpoints_every_iteration,
        run_config=tune.RunConfig(
            name="ckpt",
            storage_path=str(tmp_path / "ray"),
            callbacks=[callback],
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=METRIC, checkpoint_score_order="max"
            ),
        ),
    )
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        grid = tuner.fit()
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    [(recorded,)] = query(fresh_db_url, "SELECT best_checkpoint FROM mario_sweeps.trials")
    assert Path(recorded).is_dir()
    assert recorded.endswith("checkpoint_000001")  # the 2nd (index 1): where the metric peaked
    best, _ = max(grid[0].best_checkpoints, key=lambda pair: pair[1][METRIC])
    assert best.path == recorded
