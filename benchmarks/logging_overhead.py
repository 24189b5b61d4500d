"""Cost of our logging: a PPO trial's throughput with the episode recorder, PostgreSQL and W&B
callbacks on, next to the same trial with all of them off, in one run.

Throughput is measured on the driver — env steps between the first and last result over the wall
time between them — so it includes whatever the driver-side callbacks delay (Tune starts a trial's
next ``train()`` only after the previous result went through every callback). Runs alternate
(off, on, off, on, ...) against one Ray instance so machine noise hits both alike.

    python benchmarks/logging_overhead.py [--iterations 12] [--rounds 2] [--json]
"""

import argparse
import json
import statistics
import tempfile
import time
import uuid

from ray import tune
from ray.rllib.algorithms.ppo import PPO

from algos import ppo_config
from benchmarks import ray_running
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.postgres_callback import PostgresCallback
from callbacks.store import embedded_db_url, prepare_database
from callbacks.wandb_logger import MarioWandbLoggerCallback
from envs import register_mario_env


class DriverClock(tune.Callback):
    """Env steps and wall time at every result, as the driver sees them."""

    def __init__(self):
        self.points: list[tuple[float, float]] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.points.append((time.monotonic(), result["num_env_steps_sampled_lifetime"]))

    def steps_per_second(self, warmup: int) -> float:
        (t0, s0), (t1, s1) = self.points[warmup], self.points[-1]
        return (s1 - s0) / (t1 - t0)


def one_trial(*, logging: bool, iterations: int, db_url: str, storage: str) -> float:
    config = ppo_config(env_config={"max_episode_steps": 200})
    if logging:
        config = config.callbacks(EpisodeRecorder)
    clock = DriverClock()
    callbacks = [clock]
    if logging:
        sweep = {
            "name": f"overhead-{uuid.uuid4().hex[:8]}",
            "algo": "PPO",
            "search_space": {},
            "metric": "mario/x_pos_smoothed",
            "mode": "max",
        }
        callbacks = [
            PostgresCallback(db_url=db_url, sweep=sweep),
            MarioWandbLoggerCallback(
                project="mario-sweeps-bench", group=sweep["name"], mode="offline"
            ),
            clock,
        ]
    tune.Tuner(
        PPO,
        param_space=config,
        run_config=tune.RunConfig(
            storage_path=storage,
            stop={"training_iteration": iterations},
            callbacks=callbacks,
            verbose=0,
        ),
    ).fit()
    return clock.steps_per_second(warmup=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=12, help="training iterations a trial")
    parser.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds (median)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    db_url = embedded_db_url(state_dir=None)
    prepare_database(db_url)
    off, on = [], []
    with ray_running(num_cpus=2), tempfile.TemporaryDirectory() as storage:
        register_mario_env()
        for _ in range(args.rounds):
            off.append(
                one_trial(logging=False, iterations=args.iterations, db_url=db_url, storage=storage)
            )
            on.append(
                one_trial(logging=True, iterations=args.iterations, db_url=db_url, storage=storage)
            )
    row = {
        "logging_off_steps_per_s": round(statistics.median(off), 1),
        "logging_on_steps_per_s": round(statistics.median(on), 1),
        "overhead": round(1 - statistics.median(on) / statistics.median(off), 4),
        "rounds": {"off": [round(x, 1) for x in off], "on": [round(x, 1) for x in on]},
    }
    if args.json:
        print(json.dumps(row, indent=2))
        return
    print(f"PPO trial, driver-side env steps/s (median of {args.rounds} alternating rounds)")
    print(f"  logging off (no recorder, no callbacks): {row['logging_off_steps_per_s']:>8.1f}")
    print(f"  logging on  (recorder + PostgreSQL + W&B): {row['logging_on_steps_per_s']:>6.1f}")
    print(f"  overhead: {row['overhead']:.1%}")


if __name__ == "__main__":
    main()
