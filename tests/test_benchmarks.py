"""The benchmarks run end to end on a tiny budget and report every row; no timing is asserted.

Also here: the env's frame-skip fast path is checked frame by frame against nes-py's own
``NESEnv.step``, because that equivalence is what makes the speed-up safe.
"""

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import gym_super_mario_bros
import numpy as np
import pytest

from algos.builders import PPO_DEFAULTS
from algos.checkpoints import load_policy
from envs.actions import DEFAULT_ACTION_SET, action_bytes
from envs.mario_env import _advance_without_info
from envs.tasks import task_info
from tests.helpers import script_helps

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
GAME_TASKS = {
    "smb1": "SuperMarioBros-1-1-v0",
    "lost_levels": "SuperMarioBros2-1-1-v0",
    "smb2_usa": "SuperMarioBros2USA-1-1-v0",
    "smb3": "SuperMarioBros3-1-1-v0",
}


def _run(script: str, *args: str, timeout: float) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_benchmark_prints_its_help():
    """``choices=range(0, 2**31)`` once made ``learning.py --help`` spin for minutes."""
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if "__main__" in p.read_text())
    assert len(scripts) >= 5
    for script, (code, text) in script_helps(scripts, timeout=120).items():
        assert code == 0 and "usage:" in text, script.name


RAYLET_ERROR_UNDER_RAY_RUNNING = """
import os, time, ray
from benchmarks import ray_running

@ray.remote(max_retries=0)
def die():
    os._exit(1)

with ray_running(num_cpus=1):
    try:
        ray.get(die.remote())
    except ray.exceptions.WorkerCrashedError:
        pass
    time.sleep(3)  # the raylet's line arrives on a listener thread
print('{"rows": []}')
"""


def test_a_raylet_error_line_goes_to_stderr_and_leaves_json_stdout_parseable():
    """A dead worker in the clone variant once put Ray's "(raylet) A worker died" before --json."""
    done = subprocess.run(
        [sys.executable, "-c", RAYLET_ERROR_UNDER_RAY_RUNNING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "A worker died" in done.stderr
    assert json.loads(done.stdout) == {"rows": []}


def test_env_throughput_reports_one_ratio_per_game():
    rows = json.loads(
        _run(
            "env_throughput.py",
            "--seconds",
            "0.2",
            "--rounds",
            "1",
            "--all-games",
            "--json",
            timeout=120,
        )
    )
    assert [r["game"] for r in rows] == list(GAME_TASKS)
    for row in rows:
        assert row["raw_frames_per_s"] > 0 and row["wrapped_agent_steps_per_s"] > 0
        assert row["ratio"] == pytest.approx(
            row["wrapped_agent_steps_per_s"] / row["raw_agent_steps_per_s"], rel=0.01
        )


@pytest.mark.slow
def test_run_reports_every_row_ratio_and_memory_figure_as_json_and_table():
    stdout = _run(
        "run.py",
        "--json",
        *("--seconds", "1", "--rounds", "1", "--iterations", "1", "--dqn-iterations", "1"),
        *("--train-batch", "256", "--envs-per-runner", "2", "--dqn-learning-starts", "200"),
        *("--cores", "1"),  # one env runner per trainer: the rows, not the machine, are tested
        timeout=180,
    )
    report = json.loads(stdout)
    rows = report["rows"]
    assert set(rows) == {"raw", "wrapped", "sampling", "ppo", "sb3_ppo", "sb3_ppo_dummy", "dqn"}
    assert all(r.get("frames_per_s", r.get("env_steps_per_s", 0)) > 0 for r in rows.values())
    assert set(report["ratios"]) == {
        *(f"{name}_to_ceiling" for name in rows if name != "raw"),
        "ppo_to_sb3_ppo",
        "ppo_to_sb3_ppo_dummy",
    }
    memory = report["memory"]
    assert memory["ppo_peak_rss_bytes"] > 0 and memory["dqn_peak_rss_bytes"] > 0
    assert memory["dqn_full_buffer_rss_bytes_extrapolated"] > 0
    assert {"ray", "torch", "nes-py", "stable-baselines3", "python"} <= set(report["versions"])

    from benchmarks import run

    table = io.StringIO()
    with redirect_stdout(table):
        run.print_table(report)
    for label in (
        "raw emulator",
        "wrapped MarioEnv",
        "RLlib sampling only",
        "RLlib PPO",
        "SB3 PPO (SubprocVecEnv)",
        "SB3 PPO (DummyVecEnv)",
        "RLlib DQN",
        "PPO trial peak RSS",
        "DQN trial peak RSS",
    ):
        assert label in table.getvalue()


@pytest.mark.parametrize("game", list(GAME_TASKS))
def test_frames_without_info_step_the_game_exactly_like_nes_step(game):
    task = GAME_TASKS[game]
    reference, fast = (gym_super_mario_bros.make(task).unwrapped for _ in range(2))
    buttons = action_bytes(DEFAULT_ACTION_SET[task_info(task).game])
    rng = np.random.default_rng(0)
    reference.reset(seed=1), fast.reset(seed=1)
    for frame in range(1500):
        button = buttons[rng.integers(len(buttons))]
        _, reward, terminated, truncated, info = reference.step(button)
        fast_reward, fast_terminated, fast_truncated, fast_info = _advance_without_info(
            fast, button
        )
        assert (fast_reward, fast_terminated, fast_truncated) == (reward, terminated, truncated)
        assert np.array_equal(fast.screen, reference.screen), frame
        if terminated or truncated:
            assert fast_info == info
            reference.reset(), fast.reset()
        elif frame % 100 == 0:
            assert fast._get_info() == reference._get_info()
    reference.close(), fast.close()


@pytest.mark.slow
def test_learning_benchmark_prints_a_curve_first_flag_and_an_evaluation(tmp_path):
    # PPO and DQN side by side, from a seed other than 0, for a quarter of a minute of a budget
    # they cannot reach: --minutes ends training after the iteration that crosses it, then
    # evaluates (both evaluations, also where the first iteration already crossed 1,000 steps).
    seconds = 15
    out = json.loads(
        _run(
            "learning.py",
            *("--variant", "wave1", "--variant", "dqn-defaults", "--first-seed", "3"),
            *("--env-steps", "100000000", "--minutes", str(seconds / 60), "--eval-episodes", "2"),
            *("--eval-at", "1000"),
            *("--out", str(tmp_path), "--json"),
            timeout=600,
        )
    )
    assert [(t["variant"], t["seed"]) for t in out["trials"]] == [("wave1", 3), ("dqn-defaults", 3)]
    for trial, raw in zip(out["trials"], out["raw"], strict=True):
        assert 1000 <= trial["env_steps"] < 100_000_000
        assert seconds <= trial["train_s"] < seconds + 120
        *before, last = raw["iterations"]
        assert all(it["time_s"] < seconds for it in before) and last["time_s"] >= seconds
        assert trial["episodes"] >= 1 and trial["env_steps_per_s"] > 0
        # Evaluated where the curve first reached 1,000 env steps and at the end, greedy and
        # sampling each time, under the same protocol; the evaluations' time is not training time.
        first_at = next(it["env_steps"] for it in raw["iterations"] if it["env_steps"] >= 1000)
        assert [(e["env_steps"], e["protocol"].split(",")[0]) for e in trial["evaluations"]] == [
            (first_at, "greedy"),
            (first_at, "sampled"),
            (trial["env_steps"], "greedy"),
            (trial["env_steps"], "sampled"),
        ]
        assert all(e["episodes"] == 2 and e["x_pos_mean"] > 0 for e in trial["evaluations"])
        assert all("sticky 0.25" in e["protocol"] for e in trial["evaluations"])
        # Each evaluated checkpoint is kept beside the curve, loadable for a later evaluation.
        for tag in ("at1000-", ""):
            kept = load_policy(tmp_path / f"{trial['variant']}-{raw['algo']}-seed3-{tag}checkpoint")
            assert kept.algo == raw["algo"]
        # The kept log is the curve, iteration by iteration, with every episode's end.
        [log] = tmp_path.glob(f"{trial['variant']}-{raw['algo']}-seed3.jsonl")
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert [line["iteration"] for line in lines] == list(range(1, len(lines) + 1))
        episodes = [e for line in lines for e in line["episodes"]]
        assert len(episodes) == trial["episodes"]
        assert all(how in ("death", "flag", "time-out") for _, how, _ in episodes)
    # --continue trains the kept PPO trial on from its final checkpoint: one curve, no restart;
    # its --minutes are its own (the curve already holds more than `seconds` of training).
    [ppo] = [raw for raw in out["raw"] if raw["algo"] == "PPO"]
    before = ppo["iterations"]
    log, final = tmp_path / "wave1-PPO-seed3.jsonl", tmp_path / "wave1-PPO-seed3-checkpoint"
    kept_at = _newest_write(final)
    resumed = json.loads(
        _run(
            "learning.py",
            *("--variant", "wave1", "--first-seed", "3", "--continue", "--out", str(tmp_path)),
            *("--env-steps", str(before[-1]["env_steps"] + 1), "--minutes", str(seconds / 60)),
            *("--eval-episodes", "0", "--json"),
            timeout=600,
        )
    )
    after = [json.loads(line) for line in log.read_text().splitlines()]
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert after[-1]["iteration"] == before[-1]["iteration"] + 1
    assert after[-1]["env_steps"] > before[-1]["env_steps"]
    assert after[-1]["time_s"] > before[-1]["time_s"]
    assert resumed["raw"][0]["iterations"] == after
    # Without an evaluation the final checkpoint is still kept, for the next --continue.
    assert _newest_write(final) > kept_at and load_policy(final).algo == "PPO"


def _newest_write(folder: Path) -> int:
    return max(path.stat().st_mtime_ns for path in folder.rglob("*"))


def test_train_batch_resizes_ppo_variants_and_leaves_dqn_alone():
    from benchmarks.variants import VARIANTS, sized

    small = sized(VARIANTS["wave1"], 128).hparams
    assert (small["train_batch_size_per_learner"], small["minibatch_size"]) == (128, 128)
    assert small["num_epochs"] == VARIANTS["wave1"].hparams["num_epochs"]
    large = sized(VARIANTS["defaults"], 8192).hparams
    assert large["train_batch_size_per_learner"] == 8192
    assert large["minibatch_size"] == PPO_DEFAULTS["minibatch_size"]
    assert sized(VARIANTS["dqn-defaults"], 128) == VARIANTS["dqn-defaults"]
    assert sized(VARIANTS["wave1"], None) == VARIANTS["wave1"]


def _record_random_play(demos: Path, steps: int = 40) -> None:
    """Demonstrations in the format of the clone variant's trainer: a few random steps."""
    from benchmarks.variants import VARIANTS
    from envs import MarioEnv, validate_env_config
    from envs.config import training_env_config
    from envs.demonstrations import DemoRecorder

    config = validate_env_config(training_env_config(VARIANTS["flag-sticky-bc"].env_config))
    recorder, env = DemoRecorder(demos, config, source="person:random"), MarioEnv(config)
    obs, info = env.reset(seed=0)
    recorder.begin(obs)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, info = env.step(action)
        recorder.step(action, reward, obs, terminated, truncated)
        if terminated or truncated:
            break
    recorder.end(info, cut=True)
    env.close()


@pytest.mark.slow
def test_learning_benchmark_starts_a_clone_variant_from_behaviour_cloning(tmp_path):
    _record_random_play(tmp_path / "demos")
    out = json.loads(
        _run(
            "learning.py",
            *("--variant", "flag-sticky-bc", "--demos", str(tmp_path / "demos")),
            *("--bc-iterations", "1", "--env-steps", "300", "--eval-episodes", "0", "--json"),
            *("--train-batch", "256"),
            timeout=600,
        )
    )
    (trial,) = out["trials"]
    assert trial["bc"]["iterations"] == 1 and len(trial["bc"]["policy_loss"]) == 1
    assert all(np.isfinite(trial["bc"]["policy_loss"])) and trial["bc"]["seconds"] > 0
    assert trial["env_steps"] >= 300  # BC costs no env steps: the PPO curve starts at 0
    assert out["raw"][0]["iterations"][0]["env_steps"] <= 300  # one --train-batch of 256


@pytest.mark.parametrize(
    ("demos", "message"),
    [
        (None, "--variant flag-sticky-bc starts from behaviour cloning: give --demos DIR"),
        ("empty", "--demos: demonstrations"),
    ],
)
def test_learning_benchmark_refuses_a_clone_variant_without_usable_demonstrations(
    tmp_path, demos, message
):
    args = ["--variant", "flag-sticky-bc"]
    if demos:
        (tmp_path / demos).mkdir()
        args += ["--demos", str(tmp_path / demos)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "learning.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and message in done.stderr


def test_learning_benchmark_continue_needs_an_earlier_run(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "learning.py"), "--continue", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    expected = f"--continue needs {tmp_path / 'defaults-PPO-seed0.jsonl'}"
    assert done.returncode == 2 and expected in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_learning_benchmark_rejects_a_variant_of_the_other_algo():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "learning.py"), "--algo", "DQN", "--variant", "wave1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--variant wave1 is a PPO variant" in done.stderr


def test_collapse_detection_reports_every_rule_on_the_kept_real_curves():
    out = json.loads(_run("collapse_detection.py", "--json", timeout=300))
    assert len(out["curves"]) >= 2
    rules = {r["rule"]: r for r in out["rules"]}
    assert len(rules) == len(out["rules"]) >= 2
    for rule in rules.values():
        assert rule["healthy_watches"] >= rule["healthy_curves"] >= 2
        assert rule["spliced"] >= 1
        assert len(rule["delays"]) == rule["spliced"]
        assert 0 <= rule["false_positives"] <= rule["healthy_watches"]
    assert {r["metric"] for r in out["rungs"]} >= {"x_pos_smoothed", "x_pos_last100"}
    # Every rung of the sweep files' ASHA that the kept curves reach is judged, on every pair.
    assert {r["rung"] for r in out["rungs"]} == {50_000, 150_000}
    for r in out["rungs"]:
        assert r["pairs"] >= 1 and 0 <= r["rung_agrees_with_later_ranking"] <= r["pairs"]


def test_a_spliced_collapse_falls_to_real_episodes_of_a_collapsed_agent():
    sys.path.insert(0, str(BENCHMARKS))
    from collapse_detection import agent_episodes, splice

    pool = agent_episodes(3, seed=5, favour=0.5)  # three deaths in a second of play
    assert all(0 < x < 3161 and how in ("death", "time-out") for x, how, _ in pool)
    curve = [
        {"iteration": i, "env_steps": 1000 * i, "episodes": [[100 * i, "death", 50]] * 3}
        for i in range(1, 60)
    ]
    spliced = splice(curve, 30_000, pool=pool, seed=0)
    assert spliced[:30] == curve[:30]
    for before, after in zip(curve[30:], spliced[30:], strict=True):
        assert len(after["episodes"]) == len(before["episodes"])
        assert all(e in pool for e in after["episodes"])


def test_no_collapse_is_spliced_where_the_trial_already_stood_at_the_collapse_level():
    sys.path.insert(0, str(BENCHMARKS))
    from collapse_detection import LEVELS, evaluate_rules

    pool = json.loads(LEVELS.read_text())["collapsed"]
    # A trial that never left the collapsed agent's level: 250 iterations of 1,024 env steps.
    flat = [
        {"iteration": i + 1, "env_steps": 1024 * (i + 1), "episodes": pool[i % 92 : i % 92 + 8]}
        for i in range(250)
    ]
    above = [{**it, "episodes": [[x * 2, how, n] for x, how, n in it["episodes"]]} for it in flat]
    rules = evaluate_rules({"flat": flat, "above": above}, pool)
    # 100k, 150k and 200k are splice points of both; only the curve at twice the level gets them.
    assert {(r["spliced"], r["not_spliced_already_near_the_level"]) for r in rules} == {(3, 3)}


def test_dqn_sweeps_do_not_stop_a_real_dqn_trial_whose_exploring_peak_it_recovers_from():
    sys.path.insert(0, str(BENCHMARKS))
    from collapse_detection import DATA, Rule, first_verdict, load, metrics

    from sweeps.dqn_lr_target import SWEEP as DQN_SWEEP
    from sweeps.dqn_vs_ppo import SWEEPS
    from sweeps.spec import DQN_COLLAPSE, Collapse

    rows = metrics(load(DATA / "dqn-defaults-DQN-seed0-164k.jsonl"))
    metric = "x_pos_last100"
    # The PPO rule stops this trial while epsilon anneals; the DQN sweeps' rule lets it recover.
    assert first_verdict(rows, Rule("ppo", metric, Collapse())) is not None
    assert first_verdict(rows, Rule("dqn", metric, DQN_COLLAPSE)) is None
    assert DQN_SWEEP.collapse == DQN_COLLAPSE
    assert {s.algo: s.collapse for s in SWEEPS} == {"DQN": DQN_COLLAPSE, "PPO": Collapse()}


def test_fault_injection_finds_only_the_ray_processes_this_process_started():
    """The env runner of a test running beside it on the machine is not its to kill: a
    machine-wide search once SIGKILLed a parallel test's env runner."""
    from benchmarks.faults import processes

    title = "ray::SingleAgentEnvRunner.sample"
    elsewhere = subprocess.run(  # orphaned at once: no longer this process's descendant
        ["bash", "-c", f'(exec -a "{title}" sleep 60 >/dev/null 2>&1 & echo $!)'],
        capture_output=True,
        text=True,
    )
    stranger = int(elsewhere.stdout)
    own = subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 60'])
    try:
        deadline = time.monotonic() + 10
        while not any(p.pid == own.pid for p in processes("SingleAgentEnvRunner")):
            assert time.monotonic() < deadline, "this process's own decoy was not found"
            time.sleep(0.05)
        assert stranger not in {p.pid for p in processes("SingleAgentEnvRunner")}
    finally:
        own.kill()
        os.kill(stranger, signal.SIGKILL)
