"""Demonstrations: a checkpoint's episodes recorded as RLlib offline rows, read back by RLlib."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from ray.rllib.core.columns import Columns
from ray.rllib.utils.compression import unpack

from algos import ppo_config
from algos.evaluate import main as evaluate_main
from envs import MarioEnv, register_mario_env, validate_env_config
from envs.demonstrations import MANIFEST, DemoError, DemoRecorder, check_demonstrations

pytestmark = pytest.mark.xdist_group("demonstrations")  # one worker builds its module fixtures

TINY_ENV = {"max_episode_steps": 60}
ROW_COLUMNS = [
    Columns.EPS_ID,
    Columns.OBS,
    Columns.NEXT_OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
]


@pytest.fixture(scope="module")
def teacher(ray_session, tmp_path_factory):
    """A PPO checkpoint (untrained: the format, not the play, is under test here)."""
    register_mario_env()
    algo = ppo_config(env_config=TINY_ENV, hparams={"num_env_runners": 0}).build_algo()
    path = tmp_path_factory.mktemp("teacher") / "checkpoint"
    algo.save_to_path(path)
    algo.stop()
    return path


def record(teacher, directory, *more) -> int:
    return evaluate_main(
        [str(teacher), "--episodes", "2", "--noop-max", "0", "--record-demos", str(directory)]
        + list(more)
    )


def test_a_checkpoint_records_every_step_it_plays_as_rllib_offline_rows(teacher, tmp_path, capsys):
    demos = tmp_path / "demos"
    assert record(teacher, demos, "--noop-max", "5") == 0
    assert "recorded 2 episodes" in capsys.readouterr().out
    manifest = json.loads((demos / MANIFEST).read_text())
    assert manifest["observations"]["observation_shape"] == [84, 84, 4]
    assert manifest["observations"]["action_set"] == "right_only"
    episodes = manifest["episodes"]
    assert len(episodes) == 2 and all(e["source"] == f"checkpoint:{teacher}" for e in episodes)
    for episode in episodes:
        table = pq.read_table(demos / episode["file"])
        assert table.schema.names == ROW_COLUMNS and table.num_rows == episode["steps"]
        rows = table.to_pylist()
        assert {r[Columns.EPS_ID] for r in rows} == {episode["eps_id"]}
        obs = [unpack(r[Columns.OBS]) for r in rows]
        new_obs = [unpack(r[Columns.NEXT_OBS]) for r in rows]
        assert obs[0].shape == (84, 84, 4) and obs[0].dtype == np.uint8
        # Consecutive rows chain: what a step led to is what the next step saw.
        assert all(np.array_equal(a, b) for a, b in zip(new_obs, obs[1:], strict=False))
        ends = [r[Columns.TERMINATEDS] or r[Columns.TRUNCATEDS] for r in rows]
        assert ends[-1] and not any(ends[:-1])
        assert sum(r[Columns.REWARDS] for r in rows) == pytest.approx(episode["episode_return"])
    # The no-op start is the protocol's, not the teacher's: episodes of 60 steps with up to 5
    # no-ops recorded fewer steps for a start that had some.
    assert all(e["steps"] <= 60 for e in episodes)


def test_a_recording_without_a_no_op_start_begins_at_the_envs_first_observation(teacher, tmp_path):
    demos = tmp_path / "demos"
    assert record(teacher, demos, "--episodes", "1") == 0
    (episode,) = json.loads((demos / MANIFEST).read_text())["episodes"]
    first = pq.read_table(demos / episode["file"]).to_pylist()[0]
    env = MarioEnv(validate_env_config({**TINY_ENV, "action_set": "right_only"}))
    expected, _ = env.reset(seed=0)
    env.close()
    assert np.array_equal(unpack(first[Columns.OBS]), expected)


def test_recordings_append_to_a_directory_of_the_same_format(teacher, tmp_path):
    demos = tmp_path / "demos"
    assert record(teacher, demos) == 0
    assert record(teacher, demos, "--seed", "5") == 0
    episodes = check_demonstrations(demos, validate_env_config({"action_set": "right_only"}))
    assert len(episodes) == 4 and len({e.eps_id for e in episodes}) == 4
    assert sorted(p.name for p in demos.glob("*.parquet")) == sorted(e.file for e in episodes)


def test_only_flags_keeps_no_episode_of_a_teacher_that_never_reached_the_flag(
    teacher, tmp_path, capsys
):
    demos = tmp_path / "demos"
    assert record(teacher, demos, "--only-flags") == 0
    assert "recorded 0 episodes that reached the flag" in capsys.readouterr().out
    assert not demos.exists()


@pytest.mark.parametrize(
    ("prepare", "more", "message"),
    [
        (lambda d: (d / "notes.txt").write_text("x"), [], "holds files but no manifest.json"),
        (
            lambda d: DemoRecorder(
                d, validate_env_config({"frame_stack": 2, "action_set": "right_only"}), source="t"
            )._write_manifest(),
            [],
            "holds demonstrations recorded with frame_stack 2; this recording's is 4",
        ),
        (
            lambda d: DemoRecorder(
                d, validate_env_config({"action_set": "simple"}), source="t"
            )._write_manifest(),
            [],
            "recorded with action_set 'simple'; this recording's is 'right_only'",
        ),
        (lambda d: (d / MANIFEST).write_text("{}"), [], "is not a demonstrations manifest"),
    ],
)
def test_a_foreign_or_mismatched_directory_is_refused_before_anything_is_written(
    teacher, tmp_path, capsys, prepare, more, message
):
    demos = tmp_path / "demos"
    demos.mkdir()
    prepare(demos)
    before = {p.name: p.read_bytes() for p in demos.iterdir()}
    assert record(teacher, demos, *more) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in demos.iterdir()} == before


def test_only_flags_needs_a_directory_to_record_to(teacher, capsys):
    assert evaluate_main([str(teacher), "--only-flags"]) == 2
    assert "--only-flags is allowed only with --record-demos DIR" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_trainer_refuses_a_directory_without_demonstrations(tmp_path, kind):
    demos = tmp_path / "demos"
    if kind == "empty":
        demos.mkdir()
    with pytest.raises(DemoError, match="demonstrations .* (is not a directory|holds no recorded)"):
        check_demonstrations(demos, validate_env_config({}))
