"""How fast a trainer learns SMB1 1-1: a learning curve, the first flag, and an evaluation.

    python benchmarks/learning.py [--algo PPO|DQN] [--variant NAME ...] [--env-steps 500000]
                                  [--seeds 1] [--first-seed 0] [--minutes M]
                                  [--eval-episodes 20] [--eval-at N ...] [--out DIR] [--json]

Each (variant, seed) is one trial built exactly as a sweep trial is (``algos`` builders, the
``mario`` env, ``EpisodeRecorder``), trained by the Algorithm directly in a Ray task, all of them
at once (two trials share this 2-core machine side by side, so noise hits both alike; variants of
PPO and DQN may run side by side). Printed per
trial: every 25k env steps the mean and max episode x_pos, flags, episodes and where episodes ended
(death / time-out / flag), then env steps and wall-clock time to the first flag, and a 20-episode
evaluation of the final policy (``algos.evaluate.Protocol``: sticky actions, no-op starts), once
greedy and once sampling actions.
``--minutes M`` ends training after M minutes even short of the budget (a long run that must fit
a working day still ends with its evaluation); the figures then say how far it got. Under
``--continue`` they are this run's minutes, not the whole curve's. ``--eval-at N``
evaluates also where the curve first reaches N env steps (one 1M run gives the 500k and the 1M
figures); wall-clock figures count training only.

``--out DIR`` keeps each trial's iterations as JSON lines (``<variant>-<algo>-seed<k>.jsonl``: env
steps, wall time, the scheduler metric and every episode's end): the real curves that
``benchmarks/collapse_detection.py`` evaluates the collapse rule on; the final checkpoint goes
beside them (``…-checkpoint``, ``…-at500000-checkpoint`` for ``--eval-at 500000``) for
``python -m algos.evaluate`` to play again. ``--continue`` picks each trial up from the final
checkpoint and curve an earlier run left in ``--out`` and trains it on to ``--env-steps`` (a 1M run
split over two working days is one curve; the env runners' random streams restart, so it is the
same trial statistically, not bit for bit).

Variants (``benchmarks/variants.py``): ``defaults`` is whatever ``PPO_DEFAULTS``/``DQN_DEFAULTS``
are today; ``wave1`` is the PPO configuration of wave 1, frozen, the baseline every change is
measured against.
"""

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import ray

from algos.builders import BUILDERS
from algos.evaluate import int_in
from algos.imitation import clone
from benchmarks import ray_running
from benchmarks.learning_report import format_trial, summary
from benchmarks.learning_trial import train_trial
from benchmarks.variants import VARIANTS, sized
from envs import validate_env_config
from envs.config import training_env_config
from envs.demonstrations import DemoError, check_demonstrations

CORES = 2
"""This machine's; trials side by side share them."""


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; allowed: minutes > 0")
    return value


def _not_continuable(out: str | None, names: list[str], seeds: range) -> str | None:
    """The first file --continue needs that is not there, or None."""
    if not out:
        return "--out"
    for name in names:
        for seed in seeds:
            stem = Path(out) / f"{name}-{VARIANTS[name].algo}-seed{seed}"
            for needed in (stem.with_suffix(".jsonl"), Path(f"{stem}-checkpoint")):
                if not needed.exists():
                    return str(needed)
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/learning.py", description=__doc__)
    parser.add_argument(
        "--algo", choices=BUILDERS, help="run this algo's defaults (default: PPO's)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        choices=VARIANTS,
        help="trainer configurations to run side by side, PPO and DQN alike "
        "(default: the algo's defaults)",
    )
    _add_budget_flags(parser)
    _add_evaluation_flags(parser)
    parser.add_argument("--out", help="keep each trial's iterations and evaluated checkpoints here")
    parser.add_argument("--json", action="store_true", help="print JSON, not tables")
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="go on from the final checkpoint and curve each trial left in --out",
    )
    _add_speed_flags(parser)
    _add_imitation_flags(parser)
    return parser


def _add_budget_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-steps", type=int_in(1), default=500_000)
    parser.add_argument("--seeds", type=int_in(1), default=1, help="seeds per variant")
    parser.add_argument(
        "--first-seed",
        type=int_in(0, 2**31 - 1),
        default=0,
        metavar="S",
        help="seeds run S..S+K-1 (default 0)",
    )
    parser.add_argument(
        "--minutes",
        type=_minutes,
        help="end training after this many minutes even short of --env-steps, then evaluate",
    )


def _add_evaluation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--eval-episodes",
        type=int_in(0, 1000),
        default=20,
        metavar="N",
        help="episodes per evaluation, greedy and sampled each (0: no evaluation)",
    )
    parser.add_argument(
        "--eval-at",
        type=int_in(1),
        action="append",
        default=[],
        metavar="N",
        help="also evaluate where the curve first reaches N env steps (repeatable)",
    )


def _add_speed_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--whole-machine",
        action="store_true",
        help="one trial with every core (an env runner per core): the speed a user with one "
        "trial gets; needs a single variant and seed",
    )
    parser.add_argument(
        "--train-batch",
        type=int_in(64, 1_000_000),
        metavar="N",
        help="PPO variants' env steps per iteration (default: each variant's); a quick check of "
        "this script, not a learning figure",
    )


def _add_imitation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demos",
        metavar="DIR",
        help="demonstrations the clone variants (e.g. flag-sticky-bc) learn from first",
    )
    parser.add_argument(
        "--bc-iterations",
        type=int_in(1, 10_000),
        default=20,
        metavar="N",
        help="BC iterations before a clone variant's PPO (default 20; no env steps)",
    )


def _run_trials(args: argparse.Namespace, names: list[str], seeds: range) -> list[dict]:
    """Every (variant, seed) trial side by side, the clone variants' BC done first."""
    with tempfile.TemporaryDirectory() as folder:
        clones = clone_all(args, names, seeds, folder)
        return ray.get(
            [
                train_trial.remote(
                    name,
                    sized(VARIANTS[name], args.train_batch),
                    seed=seed,
                    env_steps=args.env_steps,
                    seconds=args.minutes * 60 if args.minutes else None,
                    eval_episodes=args.eval_episodes,
                    eval_at=tuple(args.eval_at),
                    out=args.out,
                    cores=CORES if args.whole_machine else None,
                    resume=args.resume,
                    clone=clones.get((name, seed)),
                )
                for name in names
                for seed in seeds
            ]
        )


def clone_all(
    args: argparse.Namespace, names: list[str], seeds: range, folder: str
) -> dict[tuple[str, int], tuple[str, dict]]:
    """BC of every clone trial (not one that continues), in this process before any trial
    starts: Ray Data lists and samples Parquet files in tasks of 1 CPU that no argument reaches,
    and trials side by side never leave a whole CPU free (BC waited forever beside one)."""
    clones = {}
    for name in names:
        if not VARIANTS[name].clone or args.resume:
            continue
        for seed in seeds:
            done = clone(
                args.demos,
                folder=f"{folder}/{name}-seed{seed}",
                keep=[args.bc_iterations],
                env_config=VARIANTS[name].env_config,
                hparams={"seed": seed},
            )
            bc = {
                "iterations": args.bc_iterations,
                "policy_loss": done.policy_loss,
                "seconds": done.seconds,
            }
            clones[name, seed] = (done.kept[args.bc_iterations], bc)
    return clones


def _demos_problem(demos: str | None, names: list[str]) -> str | None:
    """Why the clone variants among ``names`` cannot learn from ``demos``, or None."""
    clones = [n for n in names if VARIANTS[n].clone]
    if not clones:
        return None
    if demos is None:
        return f"--variant {clones[0]} starts from behaviour cloning: give --demos DIR"
    for name in clones:
        config = validate_env_config(training_env_config(VARIANTS[name].env_config))
        try:
            check_demonstrations(demos, config)
        except DemoError as err:
            return f"--demos: {err}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    names = args.variant or ["dqn-defaults" if args.algo == "DQN" else "defaults"]
    if args.whole_machine and len(names) * args.seeds > 1:
        parser.error("--whole-machine runs one trial: give one --variant and --seeds 1")
    wrong = [n for n in names if args.algo and VARIANTS[n].algo != args.algo]
    if wrong:
        parser.error(
            f"--variant {wrong[0]} is a {VARIANTS[wrong[0]].algo} variant; --algo is {args.algo}"
        )
    problem = _demos_problem(args.demos, names)
    if problem:
        parser.error(problem)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.resume:
        missing = _not_continuable(args.out, names, seeds)
        if missing:
            parser.error(f"--continue needs {missing} (from an earlier run with this --out)")
    with ray_running(num_cpus=CORES):
        trials = _run_trials(args, names, seeds)
    if args.json:
        print(json.dumps({"trials": [summary(t) for t in trials], "raw": trials}))
    else:
        print("\n\n".join(format_trial(t) for t in trials))
    return 0


if __name__ == "__main__":
    sys.exit(main())
