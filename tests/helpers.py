"""What many test files share: running a sweep as a user does (a subprocess with its own state
directory), reading the results database, and the report's figure ids."""

import atexit
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg2

from envs import MarioEnv, validate_env_config
from envs.config import training_env_config
from envs.demonstrations import DemoRecorder

REPO = Path(__file__).resolve().parents[1]

SMOKE_PASSWORD = "smoke-Secret-pw"
"""In the smoke sweep's --db-url (the embedded server trusts any password): no file, row or log
line may hold it."""


def sweep_env(tmp_path: Path, *, ray_head: bool = True) -> dict:
    """A sweep's environment: its own state directory, and the session's Ray head to join.
    ``ray_head=False``: a command refused (or answering ``--help``) before it reaches Ray, which
    should not start the head for it."""
    return {
        **os.environ,
        "MARIO_SWEEPS_STATE_DIR": str(tmp_path / "state"),
        "WANDB_MODE": "offline",
        "PYTHONUNBUFFERED": "1",
        **(shared_ray_head() if ray_head else {}),
    }


_HEAD: dict[str, str] = {}


def shared_ray_head() -> dict[str, str]:
    """The client environment of one Ray head (2 CPUs, token auth, dashboard on loopback) that
    every sweep a test starts joins through ``RAY_ADDRESS``, as a user's sweeps join a cluster:
    started on first use by ``cluster/local_cluster.sh up 0``, stopped when the session ends.
    A sweep that starts its own local Ray pays its start and stop (seconds) every time."""
    if not _HEAD:
        state = Path(tempfile.mkdtemp(prefix="mh-", dir="/tmp"))  # socket paths: keep it short
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env |= {
            "MARIO_CLUSTER_DIR": str(state),
            "MARIO_CLUSTER_PORT": str(free_port()),
            "MARIO_CLUSTER_DASHBOARD_PORT": str(free_port()),
            "MARIO_CLUSTER_HEAD_CPUS": "2",
        }
        script = ["bash", str(REPO / "cluster" / "local_cluster.sh")]
        up = subprocess.run([*script, "up", "0"], env=env, capture_output=True, text=True)
        assert up.returncode == 0, up.stderr[-3000:]
        atexit.register(subprocess.run, [*script, "down"], env=env, capture_output=True)
        _HEAD.update(
            RAY_ADDRESS=f"127.0.0.1:{env['MARIO_CLUSTER_PORT']}",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(state / "auth_token"),
        )
    return dict(_HEAD)


_HELPS = """
import contextlib, io, json, runpy, sys
helps = {}
for script in sys.argv[1:]:
    sys.argv, out = [script, "--help"], io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(script, run_name="__main__")
            code = None
        except SystemExit as exit:
            code = exit.code
    helps[script] = [code, out.getvalue()]
print(json.dumps(helps))
"""


def script_helps(
    scripts: list[Path], *, env: dict | None = None, timeout: int = 120
) -> dict[Path, tuple[int | None, str]]:
    """Each script's exit code and output for ``python SCRIPT --help`` (its ``__main__``), all in
    one process: one import of Ray, RLlib and torch instead of one per script."""
    done = subprocess.run(
        [sys.executable, "-c", _HELPS, *map(str, scripts)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    helps = json.loads(done.stdout)
    return {script: tuple(helps[str(script)]) for script in scripts}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_sweep(
    script: str | Path, *args: str, tmp_path: Path, timeout: int = 600, ray_head: bool = True
):
    return subprocess.run(
        [sys.executable, str(REPO / script) if isinstance(script, str) else str(script), *args],
        cwd=REPO,
        env=sweep_env(tmp_path, ray_head=ray_head),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(db_url: str, sql: str, *params) -> list[tuple]:
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def sweep_rows(db_url: str) -> list[tuple]:
    exists = rows(db_url, "SELECT to_regclass('mario_sweeps.sweeps') IS NOT NULL")[0][0]
    return rows(db_url, "SELECT id, name, status FROM mario_sweeps.sweeps") if exists else []


def run_module(module: str, *args: str, tmp_path: Path, timeout: int = 600):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=sweep_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_nothing_written(db_url: str, state: Path) -> None:
    """No sweep row, no Optuna study, no experiment directory."""
    assert sweep_rows(db_url) == []
    studies = rows(db_url, "SELECT to_regclass('public.studies') IS NOT NULL")[0][0]
    assert not studies or rows(db_url, "SELECT count(*) FROM studies") == [(0,)]
    results = state / "ray_results"
    assert not results.exists() or not any(results.iterdir())


def start_sweep(
    args: list[str], tmp_path: Path, script: str = "sweeps/ppo_lr_entropy.py"
) -> subprocess.Popen:
    """A sweep driver in its own process group, as a terminal's foreground job is; its output
    goes to ``tmp_path / "driver.log"`` (a pipe nobody reads would fill and stall it)."""
    log = (tmp_path / "driver.log").open("w")
    return subprocess.Popen(
        [sys.executable, str(REPO / script), *args],
        cwd=REPO,
        env=sweep_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def driver_output(tmp_path: Path) -> str:
    return (tmp_path / "driver.log").read_text()[-3000:]


def wait_for_iterations(db_url: str, driver: subprocess.Popen, iteration: int) -> None:
    """Until some trial has stored ``iteration`` training iterations."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if (
            sweep_rows(db_url)
            and rows(
                db_url, "SELECT coalesce(max(training_iteration), 0) FROM mario_sweeps.iterations"
            )[0][0]
            >= iteration
        ):
            return
        time.sleep(0.5)
    raise AssertionError("the sweep ended or stalled before it could be interrupted")


def reached_env_steps(db_url: str) -> int:
    """The env steps each trial has reached, summed: grows only with new training (a trial
    restored from a checkpoint first replays iterations it had)."""
    return rows(
        db_url,
        "SELECT coalesce(sum(reached), 0) FROM (SELECT max(env_steps_lifetime) AS reached"
        " FROM mario_sweeps.iterations GROUP BY trial_id) per_trial",
    )[0][0]


def wait_for_new_training(db_url: str, driver: subprocess.Popen, env_steps: int) -> None:
    """Until the trials have trained ``env_steps`` beyond what they had reached before."""
    target = reached_env_steps(db_url) + env_steps
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if reached_env_steps(db_url) >= target:
            return
        time.sleep(0.5)
    raise AssertionError("the resumed sweep ended or stalled before it could be interrupted")


def gids(figure) -> list[str]:
    return [a.get_gid() for a in figure.findobj() if a.get_gid()]


def trials_in(figure, kind: str) -> set[str]:
    return {g.split(":")[1] for g in gids(figure) if g.split(":")[0] == kind}


TRIAL_FIGURES = {
    "learning-curves": ["metric", "x_pos_mean", "x_pos_max"],
    "learning-curves-per-trial": ["metric", "x_pos_mean", "x_pos_max"],
    "search-parameters": ["search"],
    "search-parallel": ["parallel"],
    "episode-ends": ["ends"],
    "flag-rate": ["flag_rate"],
    "training-health": ["entropy", "kl", "loss", "vf_loss"],
}
"""Figures of the report that draw every trial, and the kinds of artist (gid prefix) in each."""


SCRIPTED_ENV = {"max_episode_steps": 150}
"""The env the scripted player plays (and a trainer on its demonstrations uses)."""
RUN, JUMP = 3, 4  # right+B, right+A+B in the trainers' right_only set


def scripted_play(seeds, recorder=None) -> list[tuple[np.ndarray, int]]:
    """A teacher that needs no person, recorded through ``DemoRecorder`` as a person's play
    would be: run right (right+B) and jump (right+A+B) for 8 steps when blocked or every 200
    pixels. Its actions follow from what the frames show, so BC can learn them. Plays once per
    seed (0-30 no-op starts); returns every (observation, action)."""
    env = MarioEnv(validate_env_config({**training_env_config(SCRIPTED_ENV), "noop_max": 30}))
    steps = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        if recorder is not None:
            recorder.begin(obs)
        x_pos, jumping, done = info["x_pos"], 0, False
        while not done:
            action = JUMP if jumping else RUN
            new_obs, reward, terminated, truncated, info = env.step(action)
            steps.append((obs, action))
            if recorder is not None:
                recorder.step(action, reward, new_obs, terminated, truncated)
            blocked = info["x_pos"] <= x_pos or info["x_pos"] % 200 < 8
            jumping = jumping - 1 if jumping else (8 if blocked else 0)
            x_pos, obs, done = info["x_pos"], new_obs, terminated or truncated
        if recorder is not None:
            recorder.end(info)
    env.close()
    return steps


def record_two_frame_stacks(demos: Path) -> Path:
    """A one-step demonstration recorded with frame stack 2: foreign to every default trainer."""
    recorder = DemoRecorder(
        demos, validate_env_config({"frame_stack": 2, "action_set": "right_only"}), source="t"
    )
    recorder.begin(np.zeros((84, 84, 2), np.uint8))
    recorder.step(1, 0.0, np.zeros((84, 84, 2), np.uint8), True, False)
    recorder.end({"task_id": "SuperMarioBros-1-1-v0", "x_pos_max": 40, "flag_get": False})
    return demos


CONSOLE_NOISE = re.compile(
    r"(^|\] )E \d|\bE \d+ \d+\]|Traceback|Exception ignored|deprecat|Install gputil"
    r"|new API stack|reinit|RuntimeDirWarning"
)
"""An error-level line of Ray's C++ logging, a traceback, a deprecation, a warning about the
machine or a hint for Ray's developers: what reads as a failure to a newcomer."""
