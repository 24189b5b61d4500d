"""Route search: demonstrations found on the emulator, recorded as the trainer sees them."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from ray.rllib.core.columns import Columns
from ray.rllib.utils.compression import unpack

from envs import MarioEnv, validate_env_config
from envs.config import training_env_config
from envs.demonstrations import MANIFEST, check_demonstrations
from envs.route_search import main

TASK = "SuperMarioBros-1-1-v0"


@pytest.mark.slow
def test_a_found_route_is_recorded_as_a_flag_episode_the_trainers_env_replays(tmp_path, capsys):
    demos = tmp_path / "demos"
    # beam 3 from seed 0 finds its route in about 27 s here; beam 4 from seed 5 took 61 s
    args = ["--record", str(demos), "--episodes", "1", "--beam", "3", "--noop-max", "30"]
    args += ["--sticky", "0.25"]  # the search must draw the sticky steps a replay draws
    assert main([*args, "--seed", "0"]) == 0
    assert "recorded 1 routes to the flag" in capsys.readouterr().out
    manifest = json.loads((demos / MANIFEST).read_text())
    (episode,) = manifest["episodes"]
    assert episode["flag_get"] and episode["source"] == "search:beam3"
    assert episode["task_id"] == TASK and episode["x_pos"] > 3000
    rows = pq.read_table(demos / episode["file"]).to_pylist()
    assert len(rows) == episode["steps"]
    assert rows[-1][Columns.TERMINATEDS] and not any(r[Columns.TERMINATEDS] for r in rows[:-1])

    # The trainer's env, started from the same seed, plays the recorded actions to the flag
    # and sees the recorded observations: the rows are what a trainer would have seen.
    config = validate_env_config(
        training_env_config({"task": TASK, "noop_max": 30, "sticky_actions": 0.25})
    )
    assert len(check_demonstrations(demos, config)) == 1
    env = MarioEnv(config)
    obs, info = env.reset(seed=0)
    for row in rows:
        assert np.array_equal(unpack(row[Columns.OBS]), obs)
        obs, reward, terminated, truncated, info = env.step(row[Columns.ACTIONS])
        assert reward == pytest.approx(row[Columns.REWARDS])
    env.close()
    assert terminated and info["flag_get"]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--episodes", "0"], "--episodes 0"),
        (["--beam", "0"], "--beam 0"),
        (["--task", "SuperMarioBros3-1-1-v0"], "'SuperMarioBros3-1-1-v0'"),
        (["--task", "SuperMarioBros-9-9-v0"], "'SuperMarioBros-9-9-v0'"),
        (["--noop-max", "-1"], "noop_max"),
        (["--sticky", "1.5"], "sticky_actions"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_directory(tmp_path, capsys, flags, named):
    demos = tmp_path / "demos"
    assert main(["--record", str(demos), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and named in err and "allowed" in err
    assert not demos.exists()
