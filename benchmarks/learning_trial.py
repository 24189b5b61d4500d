"""One trial of ``benchmarks/learning.py``: built as a sweep builds it, trained to its budget in a
Ray task, its curve kept as JSON lines and its policy evaluated under both protocols."""

import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray
import torch
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

from algos import Resources
from algos.builders import BUILDERS
from algos.checkpoints import load_policy
from algos.evaluate import Protocol, evaluate
from benchmarks.variants import Variant
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.records import EPISODES_KEY, episode_ending, metric_key
from envs import register_mario_env

EVAL_PROTOCOLS = (Protocol(), Protocol(sample=True))
"""The final policy is evaluated twice: greedy (the default protocol everywhere) and sampling,
as training does; the gap between them says whether the greedy policy lags the one that trained."""


def build_algo(
    variant: Variant, *, seed: int, env_steps: int, cores: int | None, init: str | None = None
):
    """The trial's Algorithm, built as a sweep builds it; ``cores``: it has the machine;
    ``init``: the module weights it starts from (``algos.imitation.module_weights``)."""
    register_mario_env()
    hparams, resources = {**variant.hparams, "seed": seed}, Resources()
    if cores:
        hparams["num_env_runners"], resources = cores, Resources.whole_machine(cores)
        torch.set_num_threads(cores)
    config = BUILDERS[variant.algo](
        env_config=variant.env_config,
        hparams=hparams,
        resources=resources,
        schedule_env_steps=env_steps,
        **({"init_weights": init} if init else {}),
    ).callbacks(EpisodeRecorder)
    return config.build_algo()


def iteration_row(result: dict, *, time_s: float, max_episode_steps: int) -> dict:
    """One line of the curve: env steps, training seconds, the metric, every episode's end."""
    return {
        "iteration": result["training_iteration"],
        "env_steps": int(result[NUM_ENV_STEPS_SAMPLED_LIFETIME]),
        "time_s": round(time_s, 2),
        "metric": result[metric_key("x_pos_smoothed")],
        "episodes": [
            [
                e["x_pos_max"],
                episode_ending(
                    flag_get=e["flag_get"],
                    time_left=e["time_left"],
                    length=e["length"],
                    max_episode_steps=max_episode_steps,
                ),
                e["length"],
            ]
            for e in result[EPISODES_KEY]
        ],
    }


def evaluate_algo(algo, *, env_steps: int, episodes: int, kept: Path | None) -> dict:
    """Both protocols on the algorithm's policy of now; its checkpoint kept at ``kept``."""
    with tempfile.TemporaryDirectory() as folder:
        policy = load_policy(algo.save_to_path(str(kept or folder)))
        return {
            "env_steps": env_steps,
            "results": {
                how.describe(): [
                    asdict(r) for r in evaluate(policy, episodes=episodes, protocol=how)
                ]
                for how in EVAL_PROTOCOLS
            },
        }


def _open_curve(algo, stem: Path, *, resume: bool) -> tuple[list[dict], Any]:
    """The curve so far and its JSON-lines file open for appending; with ``resume`` the algo
    is restored from the final checkpoint the earlier run kept beside it."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        return [], open(f"{stem}.jsonl", "w")
    algo.restore_from_path(f"{stem}-checkpoint")
    return [json.loads(line) for line in open(f"{stem}.jsonl")], open(f"{stem}.jsonl", "a")


@ray.remote(num_cpus=0.5)
def train_trial(
    name: str,
    variant: Variant,
    *,
    seed: int,
    env_steps: int,
    seconds: float | None,
    eval_episodes: int,
    eval_at: tuple[int, ...] = (),
    out: str | None,
    cores: int | None = None,
    resume: bool = False,
    clone: tuple[str, dict] | None = None,
) -> dict:
    """Train one trial to ``env_steps`` (or for ``seconds``), evaluate it where its curve crosses
    ``eval_at`` and at the end, and return its curve (and keep it in out). ``cores``: the trial
    has the machine to itself (an env runner per core, the learner on every core); ``clone``:
    the cloned module weights it starts from and their BC figures (``clone_all``)."""
    init, bc = clone or (None, None)
    algo = build_algo(variant, seed=seed, env_steps=env_steps, cores=cores, init=init)
    stem = Path(out or ".") / f"{name}-{variant.algo}-seed{seed}"
    iterations, log = _open_curve(algo, stem, resume=resume) if out else ([], None)
    evaluations: list[dict] = []
    done = iterations[-1]["env_steps"] if iterations else 0
    pending = sorted(n for n in eval_at if done < n < env_steps) if eval_episodes else []

    def evaluate_when_due(steps: int) -> None:
        if pending and steps >= pending[0]:  # one evaluation however many it crossed
            kept = Path(f"{stem}-at{pending[0]}-checkpoint") if out else None
            evaluations.append(
                evaluate_algo(algo, env_steps=steps, episodes=eval_episodes, kept=kept)
            )
            pending[:] = [n for n in pending if n > steps]

    try:
        train_s = _train(
            algo, iterations, log, env_steps=env_steps, seconds=seconds, after=evaluate_when_due
        )
        steps = iterations[-1]["env_steps"]
        kept = Path(f"{stem}-checkpoint") if out else None
        if eval_episodes:
            evaluations.append(
                evaluate_algo(algo, env_steps=steps, episodes=eval_episodes, kept=kept)
            )
        elif kept is not None:  # --continue picks the curve up from it
            algo.save_to_path(str(kept))
    finally:
        algo.stop()
        if log is not None:
            log.close()
    trial = {"variant": name, "algo": variant.algo, "seed": seed, "doc": variant.doc, "bc": bc}
    return trial | {
        "train_s": round(train_s, 1),
        "iterations": iterations,
        "evaluations": evaluations,
    }


def _train(algo, iterations: list[dict], log, *, env_steps: int, seconds: float | None, after):
    """Train on from ``iterations`` until ``env_steps``, or for ``seconds`` of this run's
    training; ``after(env_steps)`` runs after each iteration, its time not counted as training.
    Returns the curve's training seconds, an earlier run's included (``time_s`` of each row)."""
    max_steps = algo.config.env_config.get("max_episode_steps", 4500)
    trained_before = iterations[-1]["time_s"] if iterations else 0
    steps = iterations[-1]["env_steps"] if iterations else 0
    start = time.monotonic() - trained_before  # moved forward by each ``after``
    while steps < env_steps and (
        seconds is None or time.monotonic() - start - trained_before < seconds
    ):
        row = iteration_row(
            algo.train(), time_s=time.monotonic() - start, max_episode_steps=max_steps
        )
        steps = row["env_steps"]
        iterations.append(row)
        _append(log, row)
        paused = time.monotonic()
        after(steps)
        start += time.monotonic() - paused
    return time.monotonic() - start


def _append(log, row: dict) -> None:
    """One curve row to the kept JSON-lines log (if kept), flushed: a killed run keeps it."""
    if log is not None:
        log.write(json.dumps(row) + "\n")
        log.flush()
