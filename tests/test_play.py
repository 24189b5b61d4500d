"""A person's play recorded: ``python -m envs.play`` in a real window on Xvfb, driven by real key
events from xdotool, read back from the demonstrations it wrote."""

import json
import os
import shutil
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from ray.rllib.core.columns import Columns

from envs.play import action_for
from tests.helpers import REPO

pytestmark = pytest.mark.xdist_group("play")  # one worker builds its module fixtures

RIGHT, RIGHT_JUMP = 1, 2  # in the trainers' right_only set


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run installs Debian's xvfb and xdotool)")
        pytest.skip(f"{name} is not installed (apt-get install xvfb xdotool)")
    return found


@pytest.fixture(scope="module")
def display():
    """A virtual X screen of its own (no window manager: the test focuses windows itself)."""
    xvfb = tool("Xvfb")
    tool("xdotool")
    number = 90 + os.getpid() % 100
    server = subprocess.Popen(
        [xvfb, f":{number}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    yield {**os.environ, "DISPLAY": f":{number}"}
    server.terminate()
    server.wait()


def xdotool(env: dict, *args: str) -> str:
    done = subprocess.run(
        ["xdotool", *args], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def test_keys_play_the_action_of_the_held_buttons():
    assert action_for(set(), "right_only") == 0
    assert action_for({"right"}, "right_only") == RIGHT
    assert action_for({"right", "A"}, "right_only") == RIGHT_JUMP
    assert action_for({"right", "A", "B"}, "right_only") == 4
    assert action_for({"left"}, "right_only") == 0  # right-only has no left: NOOP
    assert action_for({"left"}, "simple") == 6
    assert action_for({"right", "down"}, "right_only") == RIGHT  # extra keys are ignored


@pytest.mark.slow
def test_a_person_playing_in_a_window_is_recorded_step_by_step(display, tmp_path):
    demos = tmp_path / "demos"
    player = subprocess.Popen(
        [sys.executable, "-m", "envs.play", "--record", str(demos), "--player", "tester"],
        cwd=REPO,
        env=display,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        window = xdotool(display, "search", "--sync", "--name", "mario-sweeps: recording")
        xdotool(display, "windowfocus", "--sync", window.split()[0])
        time.sleep(0.5)  # a moment of standing still: NOOP steps first
        xdotool(display, "keydown", "Right")
        time.sleep(1.0)
        xdotool(display, "keydown", "x")
        time.sleep(0.5)
        xdotool(display, "keyup", "x")
        xdotool(display, "keyup", "Right")
        xdotool(display, "key", "Escape")
        out, err = player.communicate(timeout=60)
    finally:
        player.kill()
    assert player.returncode == 0, err
    assert "recorded 1 episodes" in out
    (episode,) = json.loads((demos / "manifest.json").read_text())["episodes"]
    assert episode["source"] == "person:tester" and episode["x_pos"] > 40
    rows = pq.read_table(demos / episode["file"]).to_pylist()
    actions = [r[Columns.ACTIONS] for r in rows]
    # The game runs at its real speed: 15 agent steps a second, about 2 s of play here.
    assert 20 <= len(actions) <= 60
    assert actions[0] == 0 and RIGHT in actions and RIGHT_JUMP in actions
    assert actions.index(RIGHT) < actions.index(RIGHT_JUMP)
    # Escape cut the episode short: kept, and marked truncated at its last step.
    assert rows[-1][Columns.TRUNCATEDS] and not any(r[Columns.TRUNCATEDS] for r in rows[:-1])


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--episodes", "0"], "--episodes 0 is not allowed; allowed: an integer >= 1"),
        (["--task", "SuperMarioBros-9-9-v0"], "task='SuperMarioBros-9-9-v0' is not a registered"),
        (["--foreign"], "holds files but no manifest.json"),
    ],
)
def test_bad_input_is_one_line_before_any_window_or_file(tmp_path, more, message):
    demos = tmp_path / "demos"
    if more == ["--foreign"]:
        demos.mkdir()
        (demos / "notes.txt").write_text("mine")
        more = []
    done = subprocess.run(
        [sys.executable, "-m", "envs.play", "--record", str(demos), *more],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "DISPLAY"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1
    assert not demos.exists() or [p.name for p in demos.iterdir()] == ["notes.txt"]
