"""Where a Mario sweep's time goes, measured side by side in one process tree and one run.

Rows, in order (each is agent/env steps per second unless marked):

1. raw emulator frames/s (``nes_py.speedtest``; alternated with row 2, medians);
2. our wrapped ``MarioEnv`` (frame skip, max-pool, gray, resize, stack), random actions, 1 core;
3. RLlib sampling only: the PPO algorithm's env runners sampling train batches, no learning;
4. RLlib PPO training (``algos.ppo_config``), after one warm-up iteration;
5. Stable-Baselines3 PPO on the same env, network, envs, batch, minibatch and epochs;
6. RLlib DQN training (``algos.dqn_config``), after the replay buffer's learning-start fill;

then each one's ratio to the emulator ceiling (raw frames/s x cores / frame skip), PPO's ratio to
SB3, and the peak resident memory of a PPO and a DQN trial (DQN's extrapolated to a full buffer).

Rows 3-6 use a *whole-machine* single-trial config: one env runner per core (each runner process
gets ``(cores - 0.5) / cores`` CPUs, the main process 0.5) and the learner in the main process with
torch's default thread count (all cores: during PPO's learner update the env runners are idle).
Every other setting is ``PPO_DEFAULTS`` / ``DQN_DEFAULTS``; DQN starts learning after
``--dqn-learning-starts`` steps instead of its default so the measurement reaches learning soon.

    python benchmarks/run.py                       # ~4 minutes on our 2-core machine
    python benchmarks/run.py --json > bench.json   # for comparing commits
    python benchmarks/run.py --seconds 2 --rounds 1 --iterations 1 --train-batch 256  # smoke
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil

from algos import DQN_DEFAULTS, PPO_DEFAULTS, Resources, dqn_config, ppo_config
from benchmarks import ray_running, with_train_batch
from benchmarks.env_throughput import emulator_share
from benchmarks.env_throughput import measure as measure_env
from benchmarks.measure import (
    PeakRss,
    runner_torch_threads,
    sampling_steps_per_second,
    training_steps_per_second,
    trial_pids,
    warm_up,
)
from envs import MarioEnv, register_mario_env, validate_env_config
from envs.config import MARIO_ENV_DEFAULTS

TASK = "SuperMarioBros-1-1-v0"
ROWS = ("raw", "wrapped", "sampling", "ppo", "sb3_ppo", "sb3_ppo_dummy", "dqn")
PACKAGES = (
    "ray",
    "torch",
    "nes-py",
    "gym-super-mario-bros",
    "stable-baselines3",
    "gymnasium",
    "numpy",
    "opencv-python-headless",
)


def bench_ppo(*, hparams: dict, resources: Resources, seconds: float, iterations: int) -> dict:
    import torch

    algo = ppo_config(hparams=hparams, resources=resources).build_algo()
    try:
        with PeakRss(trial_pids(algo)) as rss:
            sampling = sampling_steps_per_second(algo, seconds)
            training = training_steps_per_second(algo, iterations, warm_up(algo))
        return {
            "sampling": {"env_steps_per_s": sampling},
            "ppo": training,
            "memory": {
                "ppo_peak_rss_bytes": rss.peak,
                "ppo_peak_rss_bytes_by_process": rss.peak_by_process,
            },
            "threads": {
                "learner_torch_threads": torch.get_num_threads(),
                "env_runner_torch_threads": runner_torch_threads(algo),
            },
        }
    finally:
        algo.stop()


def bench_dqn(
    *, hparams: dict, resources: Resources, iterations: int, learning_starts: int
) -> dict:
    """DQN throughput and memory. The replay buffer lives in this process, so its growth per
    buffered env step is the least-squares slope of this process's RSS against the buffer's size
    over the timed iterations; a full buffer is extrapolated from the last point with it.
    """
    hparams = {**hparams, "num_steps_sampled_before_learning_starts": learning_starts}
    capacity = hparams["replay_capacity"]
    algo = dqn_config(hparams=hparams, resources=resources).build_algo()
    observation_shape = validate_env_config(algo.config.env_config).observation_shape
    driver = psutil.Process()
    points: list[tuple[int, int]] = []

    def record() -> None:
        points.append((algo.local_replay_buffer.get_num_timesteps(), driver.memory_info().rss))

    try:
        with PeakRss(trial_pids(algo)) as rss:
            last = warm_up(algo, learning_starts)
            record()
            training = training_steps_per_second(algo, iterations, last, after_iteration=record)
            runners_rss = sum(rss.by_process()[1:])
        steps, sizes = zip(*points, strict=True)
        mean_steps, mean_size = sum(steps) / len(steps), sum(sizes) / len(sizes)
        spread = sum((x - mean_steps) ** 2 for x in steps) or 1.0
        per_step = sum((x - mean_steps) * (y - mean_size) for x, y in points) / spread
        full = sizes[-1] + runners_rss + per_step * max(0, capacity - steps[-1])
        memory = {
            "dqn_peak_rss_bytes": rss.peak,
            "dqn_peak_rss_bytes_by_process": rss.peak_by_process,
            "dqn_buffer_steps_measured": steps[-1],
            "dqn_bytes_per_buffered_step": per_step,
            "dqn_observation_bytes_per_step": int(np.prod(observation_shape)),
            "dqn_replay_capacity": capacity,
            "dqn_full_buffer_rss_bytes_extrapolated": full,
        }
        return {"dqn": training, "memory": memory}
    finally:
        algo.stop()


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine(cores: int) -> dict:
    import torch

    return {
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cores_used": cores,
        "memory_bytes": psutil.virtual_memory().total,
        "cuda": torch.cuda.is_available(),
        "platform": platform.platform(),
    }


def code_version() -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def run(args: argparse.Namespace) -> dict:
    import torch

    cores = args.cores
    frame_skip = MarioEnv({"task": TASK}).config.frame_skip
    env = measure_env("smb1", seconds=args.seconds, rounds=args.rounds)
    ppo_hp, dqn_hp = _hparams(args)
    report: dict = {
        "code_version": code_version(),
        "machine": machine(cores),
        "versions": versions(),
        "settings": _settings(args, frame_skip, ppo_hp, dqn_hp),
        "rows": {
            "raw": {"frames_per_s": env["raw_frames_per_s"], "cores": 1},
            "wrapped": {
                "env_steps_per_s": env["wrapped_agent_steps_per_s"],
                "cores": 1,
                **emulator_share(TASK, args.seconds),
            },
        },
        "memory": {},
    }
    # The learner runs in this process: give it every core (the env runners idle while it learns).
    torch.set_num_threads(cores)
    with ray_running(address="local", num_cpus=cores):
        register_mario_env()
        _train_rows(report, args, ppo_hp, dqn_hp)
    report["ratios"] = _ratios(report["rows"], frame_skip)
    return report


def _hparams(args: argparse.Namespace) -> tuple[dict, dict]:
    """PPO's and DQN's defaults with an env runner per core and the command line's overrides."""
    ppo_hp = {**PPO_DEFAULTS, "num_env_runners": args.cores}
    dqn_hp = {**DQN_DEFAULTS, "num_env_runners": args.cores}
    if args.train_batch:
        ppo_hp = with_train_batch(ppo_hp, args.train_batch)
    if args.envs_per_runner:
        ppo_hp["num_envs_per_env_runner"] = dqn_hp["num_envs_per_env_runner"] = args.envs_per_runner
    return ppo_hp, dqn_hp


def _settings(args: argparse.Namespace, frame_skip: int, ppo_hp: dict, dqn_hp: dict) -> dict:
    return {
        "task": TASK,
        "frame_skip": frame_skip,
        "env_config": dict(MARIO_ENV_DEFAULTS),
        "resources": vars(Resources.whole_machine(args.cores)),
        "ppo": {k: ppo_hp[k] for k in sorted(ppo_hp)},
        "dqn": {
            **{k: dqn_hp[k] for k in sorted(dqn_hp)},
            "learning_starts": args.dqn_learning_starts,
        },
        "seconds": args.seconds,
        "rounds": args.rounds,
        "iterations": args.iterations,
        "dqn_iterations": args.dqn_iterations,
    }


def _train_rows(report: dict, args: argparse.Namespace, ppo_hp: dict, dqn_hp: dict) -> None:
    """The trainers' rows (RLlib PPO, SB3 PPO, RLlib DQN), each printed as it is measured."""
    cores, resources = args.cores, Resources.whole_machine(args.cores)
    ppo = bench_ppo(
        hparams=ppo_hp, resources=resources, seconds=args.seconds, iterations=args.iterations
    )
    report["rows"]["sampling"] = {**ppo["sampling"], "cores": cores}
    report["rows"]["ppo"] = {**ppo["ppo"], "cores": cores}
    for name in ("sampling", "ppo"):
        _measured(name, report)
    report["memory"].update(ppo["memory"])
    report["settings"]["threads"] = ppo["threads"]
    if "sb3_ppo" not in args.skip:
        from benchmarks.sb3_ppo import sb3_ppo_steps_per_second

        for name, subprocess_envs in (("sb3_ppo", True), ("sb3_ppo_dummy", False)):
            sb3 = sb3_ppo_steps_per_second(
                env_config=MARIO_ENV_DEFAULTS,
                hparams=ppo_hp,
                num_envs=ppo_hp["num_env_runners"] * ppo_hp["num_envs_per_env_runner"],
                iterations=args.iterations,
                subprocess=subprocess_envs,
            )
            report["rows"][name] = {**sb3, "cores": cores}
            _measured(name, report)
    if "dqn" not in args.skip:
        dqn = bench_dqn(
            hparams=dqn_hp,
            resources=resources,
            iterations=args.dqn_iterations,
            learning_starts=args.dqn_learning_starts,
        )
        report["rows"]["dqn"] = {**dqn["dqn"], "cores": cores}
        _measured("dqn", report)
        report["memory"].update(dqn["memory"])


def _ratios(rows: dict, frame_skip: int) -> dict:
    """Each row against the emulator's ceiling on its cores, and PPO against SB3's."""
    raw = rows["raw"]["frames_per_s"]
    ratios = {}
    for name, row in rows.items():
        if name != "raw":
            ceiling = raw * row["cores"] / frame_skip
            row["ceiling_steps_per_s"] = ceiling
            ratios[f"{name}_to_ceiling"] = row["env_steps_per_s"] / ceiling
    for name in ("sb3_ppo", "sb3_ppo_dummy"):
        if name in rows:
            ratios[f"ppo_to_{name}"] = (
                rows["ppo"]["env_steps_per_s"] / rows[name]["env_steps_per_s"]
            )
    return ratios


def print_table(report: dict) -> None:
    rows, ratios = report["rows"], report["ratios"]
    labels = {
        "raw": "raw emulator (frames/s)",
        "wrapped": "wrapped MarioEnv",
        "sampling": "RLlib sampling only",
        "ppo": "RLlib PPO training",
        "sb3_ppo": "SB3 PPO (SubprocVecEnv)",
        "sb3_ppo_dummy": "SB3 PPO (DummyVecEnv)",
        "dqn": "RLlib DQN training",
    }
    print(f"{'measurement':<26} {'steps/s':>9} {'cores':>5} {'ceiling':>8} {'ratio':>7}")
    for name in ROWS:
        if name not in rows:
            continue
        row = rows[name]
        if name == "raw":
            print(f"{labels[name]:<26} {row['frames_per_s']:>9.0f} {row['cores']:>5}")
            continue
        print(
            f"{labels[name]:<26} {row['env_steps_per_s']:>9.1f} {row['cores']:>5} "
            f"{row['ceiling_steps_per_s']:>8.0f} {ratios[f'{name}_to_ceiling']:>7.1%}"
        )
    wrapped = rows["wrapped"]
    print(
        f"wrapped env: {wrapped['emulator_share']:.1%} of its time in the emulator, "
        f"{wrapped['us_per_frame']:.0f} us per frame of play (speedtest: "
        f"{1e6 / rows['raw']['frames_per_s']:.0f} us per frame)"
    )
    for name in ("sb3_ppo", "sb3_ppo_dummy"):
        if f"ppo_to_{name}" in ratios:
            print(f"RLlib PPO / {labels[name]}: {ratios[f'ppo_to_{name}']:.2f}x")
    for name in ("ppo", "dqn"):
        if name in rows:
            row = rows[name]
            print(
                f"{name.upper()} iteration: {row['seconds_per_iteration']:.2f} s for "
                f"{row['env_steps_per_iteration']:.0f} env steps (learner "
                f"{row['learner_s_per_iteration']:.2f} s, sampling and the rest "
                f"{row['sampling_and_rest_s_per_iteration']:.2f} s)"
            )
    memory = report["memory"]
    mib = 2**20
    by_process = ", ".join(f"{b / mib:.0f}" for b in memory["ppo_peak_rss_bytes_by_process"])
    print(f"PPO trial peak RSS: {memory['ppo_peak_rss_bytes'] / mib:.0f} MiB ({by_process})")
    if "dqn_peak_rss_bytes" in memory:
        print(
            f"DQN trial peak RSS: {memory['dqn_peak_rss_bytes'] / mib:.0f} MiB at "
            f"{memory['dqn_buffer_steps_measured']} buffered steps; "
            f"+{memory['dqn_bytes_per_buffered_step'] / 1024:.1f} KiB per buffered step "
            f"(observation {memory['dqn_observation_bytes_per_step'] / 1024:.1f} KiB) -> "
            f"{memory['dqn_full_buffer_rss_bytes_extrapolated'] / mib:.0f} MiB at capacity "
            f"{memory['dqn_replay_capacity']}"
        )


def _measured(name: str, report: dict) -> None:
    """One line on stderr as each row completes: a long run shows what it has measured so far."""
    row = report["rows"][name]
    print(f"measured {name}: {row['env_steps_per_s']:.1f} env steps/s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per env measurement")
    parser.add_argument("--rounds", type=int, default=3, help="raw/wrapped alternations (median)")
    parser.add_argument("--iterations", type=int, default=3, help="timed training iterations")
    parser.add_argument("--cores", type=int, default=2, help="CPUs given to Ray (runners = cores)")
    parser.add_argument("--train-batch", type=int, help="PPO train batch (default PPO_DEFAULTS)")
    parser.add_argument("--envs-per-runner", type=int, help="envs per env runner (default: ours)")
    parser.add_argument("--dqn-iterations", type=int, default=5, help="timed DQN iterations")
    parser.add_argument("--dqn-learning-starts", type=int, default=1000, help="DQN warm-up steps")
    parser.add_argument("--skip", nargs="*", default=[], choices=["sb3_ppo", "dqn"])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if "sb3_ppo" not in args.skip and importlib.util.find_spec("stable_baselines3") is None:
        print(
            "skipping the SB3 rows: stable-baselines3 is not installed "
            "(pip install -e '.[bench]' adds it)",
            file=sys.stderr,
        )
        args.skip.append("sb3_ppo")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
