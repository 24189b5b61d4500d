"""Every flag a sweep's command line takes, checked once: ``parse_options`` turns argv into
``Options`` or raises ``SweepError`` (one line naming the flag, its value and what is allowed),
before Ray starts and before anything is written.

The sweep files parse through here (``sweeps.runner.main``); ``sweeps.confirm`` rebuilds
``Options`` from a stored sweep and shares the confirm-count and password checks.
"""

import argparse
import json
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ray.tune import Tuner
from ray.tune.search.sample import Categorical, Domain

from algos import HParamError, Resources
from algos.algorithms import BC_ITERATIONS
from algos.builders import BUILDERS
from algos.hparams import DQN_RULES, PPO_RULES, check_hparams
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.periodic_evaluation import periodic_evaluation
from callbacks.records import EVAL_CHECKPOINT_SCORE, EVAL_PREFIX
from callbacks.store import (
    default_state_dir,
    has_password,
    mask_url,
)
from envs import EnvConfigError, validate_env_config
from envs.config import training_env_config
from envs.demonstrations import DemoError, check_demonstrations
from sweeps.cli import (
    PASSWORD_ADVICE,
    OneLineParser,
    SweepError,
    add_db_url_flag,
    given_db_url,
)
from sweeps.pbt import pb2_bounds
from sweeps.schedule import Schedule
from sweeps.spec import SCHEDULERS, Pbt, Sweep, check_pbt

__all__ = [
    "MAX_SEEDS",
    "MAX_TOP",
    "Options",
    "add_connection_flags",
    "add_eval_flags",
    "algorithm_config",
    "confirm_counts_problem",
    "connections",
    "count",
    "eval_episodes",
    "parse_options",
    "warn_about_password",
]

RULES = {"PPO": PPO_RULES, "DQN": DQN_RULES}
WANDB_MODES = ("offline", "online", "disabled")
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "file")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_WANDB_PROJECT = re.compile(r"[A-Za-z0-9_.-]{1,128}")
ADDRESS = re.compile(r"auto|local|ray://[^\s/:]+:\d{1,5}|[^\s/:]+:\d{1,5}")
MAX_ENV_STEPS = 10**12
"""Far beyond any run (1M steps take a day here) and safe in PostgreSQL's bigint."""
MAX_ITERATIONS = 10**9
"""Training iterations between checkpoints: beyond that a trial checkpoints at its end only."""
MAX_TOP = 100
"""Configs a confirm stage may re-run."""
MAX_SEEDS = 1_000
"""Seeds per confirmed config."""


def confirm_counts_problem(top: int, seeds: int, *, top_flag: str, seeds_flag: str) -> str | None:
    """Why ``top`` configs x ``seeds`` seeds is no confirm stage (one line), or None."""
    if not 0 <= top <= MAX_TOP:
        return f"{top_flag} {top} is not allowed; allowed: an integer in [0, {MAX_TOP}]"
    if not 0 <= seeds <= MAX_SEEDS:
        return f"{seeds_flag} {seeds} is not allowed; allowed: an integer in [0, {MAX_SEEDS:,}]"
    return None


@dataclass(frozen=True)
class Options:
    """The validated command line, merged with the sweep's declaration."""

    sweep: Sweep
    name: str
    num_samples: int
    max_env_steps: int
    max_concurrent: int
    storage_path: str
    """A local directory or a URI (s3://, gs://) that every node can reach."""
    env_config: dict
    hparams: dict
    schedule: Schedule
    """ASHA with Optuna, or a PBT/PB2 population (:mod:`sweeps.pbt`), decided once here."""
    address: str | None = None
    db_url: str | None = None
    wandb_project: str = "mario-sweeps"
    wandb_mode: str = "offline"
    gpus_per_learner: float = 0.0
    resume: bool = False
    smoke: bool = False
    command: str = ""
    """The launch command rebuilt from the parsed options, password masked (stored on the row)."""
    eval_episodes: int = 5
    """Episodes each evaluated checkpoint plays at the end (0: no evaluation)."""
    eval_sample: bool = False
    eval_every: int = 0
    """Env steps between a trial's evaluations during training (0: none); each plays
    ``eval_episodes`` greedy episodes and its score ranks the trial's kept checkpoints."""
    report_every_s: float = 0.0
    """Seconds between refreshes of the HTML report while the sweep runs (0: only at the end)."""
    confirm_top: int = 0
    """Distinct configs the confirm stage re-runs over fresh seeds (0: no confirm stage)."""
    confirm_seeds: int = 0
    demos: str | None = None
    """The demonstration directory a sweep with ``imitation`` clones before its trials."""
    bc_hparams: dict = field(default_factory=dict)
    """BC's hyperparameters (the sweep's ``imitation.hparams``, or its smoke budget's)."""

    @property
    def clone_dir(self) -> str:
        """Where the BC stage keeps its clones: beside the experiment when it is local (trials on
        other nodes need shared storage), else under the state dir."""
        return f"{self.report_dir}/bc"

    @property
    def checkpoint_score(self) -> str:
        """What ranks a trial's checkpoints: how they played, when evaluated during training."""
        return EVAL_CHECKPOINT_SCORE if self.eval_every else self.sweep.metric

    @property
    def report_dir(self) -> Path:
        """Beside the experiment when it is local, else under the state dir."""
        if "://" in self.storage_path:
            return default_state_dir() / "reports" / self.name
        return Path(self.experiment_dir)

    @property
    def experiment_dir(self) -> str:
        return f"{self.storage_path}/{self.name}"


def _whole(value: object, low: int, high: int = 2**31 - 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_declaration(sweep: Sweep) -> None:
    """The sweep file's own values, checked before any flag (``SweepError`` names the field)."""
    where = f"sweep {sweep.name!r}:"
    if sweep.mode not in ("max", "min"):
        raise SweepError(f"{where} mode={sweep.mode!r} is not allowed; allowed: 'max', 'min'")
    if not isinstance(sweep.metric, str) or not sweep.metric:
        raise SweepError(f"{where} metric={sweep.metric!r} is not allowed; allowed: a result key")
    for name, value, low in (
        ("seed", sweep.seed, 0),
        ("checkpoint_every", sweep.checkpoint_every, 1),
        ("smoke.num_samples", sweep.smoke.num_samples, 1),
        ("smoke.max_env_steps", sweep.smoke.max_env_steps, 1),
    ):
        if not _whole(value, low):
            raise SweepError(
                f"{where} {name}={value!r} is not allowed; allowed: an integer >= {low}"
            )
    for asha_field, asha in (("asha", sweep.asha), ("smoke.asha", sweep.smoke.asha)):
        if asha is not None and not (
            _whole(asha.grace_period, 1) and _whole(asha.reduction_factor, 2)
        ):
            raise SweepError(
                f"{where} {asha_field}={asha!r} is not allowed; allowed: grace_period >= 1 and "
                "reduction_factor >= 2 (integers)"
            )
    rules = RULES.get(sweep.algo)
    for k, point in enumerate(sweep.points_to_evaluate):
        unknown = sorted(set(point) - set(sweep.search_space))
        if unknown:
            raise SweepError(
                f"{where} points_to_evaluate[{k}] sets {unknown[0]!r}, which is not searched; "
                f"allowed: keys of the search space ({', '.join(sweep.search_space)})"
            )
        if rules is not None:
            try:
                check_hparams(sweep.algo, point, rules)
            except HParamError as err:
                raise SweepError(f"{where} points_to_evaluate[{k}]: {err}") from None


def _parser(sweep: Sweep) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=f"python sweeps/{sweep.name}.py",
        description=f"{sweep.algo} sweep '{sweep.name}' over {', '.join(sweep.search_space)} "
        f"(Optuna TPE + ASHA on env steps + collapse detection).",
        epilog=f"Database passwords: {PASSWORD_ADVICE} (a command line is visible to every "
        "local user and in the Ray dashboard's job list).",
    )
    p.add_argument(
        "--num-samples",
        type=int,
        help=f"trials ASHA runs (default {sweep.num_samples})"
        if sweep.num_samples is not None
        else "trials ASHA runs (PBT/PB2 run --population members)",
    )
    p.add_argument(
        "--max-env-steps",
        type=int,
        help=f"env-step budget per trial (default {sweep.max_env_steps})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        help="training iterations between a trial's checkpoints, where a restore or --resume "
        f"picks it up (default {sweep.checkpoint_every}; a trial also checkpoints at its end)",
    )
    add_connection_flags(p, max_concurrent=sweep.max_concurrent)
    p.add_argument(
        "--name", help=f"sweep name: row, study and experiment dir (default {sweep.name})"
    )
    p.add_argument("--resume", action="store_true", help="restore the interrupted sweep --name")
    p.add_argument("--smoke", action="store_true", help="tiny budget that ends in minutes")
    p.add_argument(
        "--storage-path",
        help="Tune experiment storage (default: the state dir's ray_results; shared storage "
        "on a multi-node cluster)",
    )
    p.add_argument(
        "--task", help="play this registered task id instead (e.g. SuperMarioBros3-1-1-v0)"
    )
    p.add_argument("--env-config", help="JSON object merged into the sweep's env_config")
    add_eval_flags(p, default="5, --smoke 1")
    _add_stage_flags(p, sweep)
    if sweep.imitation is not None:
        p.add_argument(
            "--demos",
            help="demonstration directory the trials start from by behaviour cloning "
            f"({RECORD_HINT})",
        )
    p.add_argument(
        "--report-every",
        type=float,
        default=5.0,
        help="minutes between refreshes of the HTML report during the sweep (0: at the end only)",
    )
    return p


def add_connection_flags(parser: argparse.ArgumentParser, *, max_concurrent: int) -> None:
    """Where trials run and write: the flags of the sweep files and ``sweeps.confirm`` alike
    (checked by :func:`connections`)."""
    parser.add_argument(
        "--max-concurrent", type=int, help=f"trials at once (default {max_concurrent})"
    )
    parser.add_argument(
        "--address", help="Ray cluster to join (default: RAY_ADDRESS, else local Ray)"
    )
    add_db_url_flag(parser)
    parser.add_argument("--wandb-project", default="mario-sweeps", help="W&B project")
    parser.add_argument(
        "--wandb-mode", help="offline (default without WANDB_API_KEY), online, disabled"
    )
    parser.add_argument(
        "--gpus-per-learner", type=float, default=0.0, help="GPUs for each trial's learner"
    )


def add_eval_flags(parser: argparse.ArgumentParser, *, default: str) -> None:
    """How kept checkpoints are evaluated at the end (checked by :func:`eval_episodes`)."""
    parser.add_argument(
        "--eval-episodes",
        type=int,
        help=f"episodes each evaluated checkpoint plays (default {default}; 0: off)",
    )
    parser.add_argument(
        "--eval-sample", action="store_true", help="also evaluate sampling from the policy"
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        help=f"env steps between a trial's evaluations during training, which keep the "
        f"checkpoint that played best (default {DEFAULT_EVAL_EVERY:,} for a budget of at "
        "least that, else 0; --smoke 0; 0: off)",
    )


def _add_stage_flags(parser: argparse.ArgumentParser, sweep: Sweep) -> None:
    """The scheduler (ASHA or a PBT/PB2 population) and the confirm stage after the search."""
    parser.add_argument(
        "--confirm-top",
        type=int,
        help=f"after the search, re-run the best K configs over fresh seeds (default "
        f"{sweep.confirm_top}, --smoke {sweep.smoke.confirm_top}; 0: off)",
    )
    parser.add_argument(
        "--confirm-seeds",
        type=int,
        help=f"seeds per confirmed config (default {sweep.confirm_seeds}, --smoke "
        f"{sweep.smoke.confirm_seeds})",
    )
    parser.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help="asha: Optuna TPE + ASHA (default); pbt / pb2: population-based training of "
        f"{(sweep.pbt or Pbt()).population} members"
        + (" (this sweep's default)" if sweep.asha is None else ""),
    )
    parser.add_argument(
        "--population", type=int, help="PBT/PB2 members (default from the sweep file)"
    )
    parser.add_argument(
        "--perturbation-interval",
        type=int,
        help="PBT/PB2: env steps between a member's exploit/explore decisions",
    )
    parser.add_argument(
        "--quantile-fraction",
        type=float,
        help="PBT/PB2: the bottom fraction copies from the top fraction (0 < f <= 0.5)",
    )


def count(flag: str, value: int | None, default: int, *, high: int) -> int:
    """A positive count flag's value (``default`` when not given), or a one-line SweepError."""
    if value is None:
        return default
    if not 1 <= value <= high:
        raise SweepError(f"{flag} {value} is not allowed; allowed: an integer in [1, {high:,}]")
    return value


def _strict_json(text: str, flag: str) -> object:
    def reject(constant: str) -> None:
        raise SweepError(f"{flag} {text!r} is not allowed: {constant} is not a finite number")

    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as err:
        raise SweepError(f"{flag} {text!r} is not JSON ({err.msg})") from None


def parse_options(sweep: Sweep, argv: list[str] | None = None, *, name_suffix: str = "") -> Options:
    """Parse and validate the command line; raise ``SweepError`` with one line on bad input.

    ``name_suffix`` is appended to the sweep name (``sweeps/dqn_vs_ppo.py`` runs two sweeps).
    Reads nothing but the arguments, the environment and the storage path; writes nothing.
    """
    check_declaration(sweep)
    parser = _parser(sweep)
    args = parser.parse_args(argv)
    base = sweep.smoke if args.smoke else sweep
    name = (args.name or (f"{sweep.name}-smoke" if args.smoke else sweep.name)) + name_suffix
    if not _NAME.fullmatch(name):
        raise SweepError(
            f"--name {name!r} is not allowed; allowed: 1-63 letters, digits, '_', '.', '-'"
        )
    max_env_steps = count(
        "--max-env-steps", args.max_env_steps, base.max_env_steps, high=MAX_ENV_STEPS
    )
    schedule = _schedule(sweep, args, base, max_env_steps=max_env_steps)
    episodes = eval_episodes(args.eval_episodes, smoke=args.smoke)
    if schedule["schedule"].pbt is not None:
        num_samples = schedule["schedule"].pbt.population
    else:
        assert base.num_samples is not None  # ASHA's: a Sweep with asha has it (__post_init__)
        num_samples = count("--num-samples", args.num_samples, base.num_samples, high=100_000)
    checkpoint_every = count(
        "--checkpoint-every", args.checkpoint_every, sweep.checkpoint_every, high=MAX_ITERATIONS
    )
    options = Options(
        sweep=replace(sweep, checkpoint_every=checkpoint_every),
        name=name,
        num_samples=num_samples,
        max_env_steps=max_env_steps,
        **connections(args, max_concurrent=base.max_concurrent),
        resume=args.resume,
        smoke=args.smoke,
        storage_path=_storage_path(args.storage_path),
        env_config=_env_config(sweep, args),
        hparams={**sweep.hparams, **(sweep.smoke.hparams if args.smoke else {})},
        command=_command(
            parser, args, prog=sys.argv[0] if argv is None else f"sweeps/{sweep.name}.py"
        ),
        eval_episodes=episodes,
        eval_sample=args.eval_sample,
        eval_every=eval_every(
            args.eval_every, smoke=args.smoke, max_env_steps=max_env_steps, episodes=episodes
        ),
        report_every_s=_report_every_s(args.report_every),
        demos=_demos(getattr(args, "demos", None)),
        bc_hparams={
            **(sweep.imitation.hparams if sweep.imitation else {}),
            **(sweep.smoke.bc_hparams if args.smoke and sweep.imitation else {}),
        },
        **schedule,
    )
    check_imitation(sweep, demos=options.demos, env_config=options.env_config)
    check_eval_metric(options)
    _check_trial(options)
    return options


def _demos(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


RECORD_HINT = (
    "python -m algos.evaluate CHECKPOINT --record-demos DIR [--only-flags], or "
    "python -m envs.play --record DIR"
)


def bc_budgets(sweep: Sweep, hparams: dict[str, Any]) -> list[int]:
    """Every ``bc_iterations`` a trial of the sweep may start from (0: from scratch)."""
    value = sweep.search_space.get(BC_ITERATIONS, hparams.get(BC_ITERATIONS))
    if value is None:
        return []
    if isinstance(value, Categorical):
        return sorted(value.categories)
    if isinstance(value, Domain):
        raise SweepError(
            f"sweep {sweep.name!r}: {BC_ITERATIONS} is searched with a {type(value).__name__}; "
            "allowed: tune.choice([...]) of BC budgets (each is a checkpoint of one BC run)"
        )
    return [value]


def check_imitation(sweep: Sweep, *, demos: str | None, env_config: dict) -> None:
    """The BC stage can run: a PPO sweep with ``imitation``, budgets, and ``--demos`` that a
    trainer on ``env_config`` can learn from. Reads the demonstrations' manifest only."""
    if sweep.imitation is None:
        return
    if sweep.algo != "PPO":
        raise SweepError(
            f"sweep {sweep.name!r}: imitation is for PPO; this sweep trains {sweep.algo}"
        )
    if not bc_budgets(sweep, sweep.hparams):
        raise SweepError(
            f"sweep {sweep.name!r}: imitation needs {BC_ITERATIONS} in its search space or "
            "hparams; allowed: tune.choice([0, 10, ...]) or a fixed number of BC iterations"
        )
    if demos is None:
        raise SweepError(
            f"sweep {sweep.name!r} starts its trials from behaviour cloning: give --demos DIR "
            f"(recorded with {RECORD_HINT})"
        )
    try:
        check_demonstrations(demos, validate_env_config(training_env_config(env_config)))
    except (DemoError, EnvConfigError) as err:
        raise SweepError(f"--demos: {err}") from None


def connections(args: argparse.Namespace, *, max_concurrent: int) -> dict:
    """Where trials run and write (:func:`add_connection_flags`): Ray address, GPUs, database
    URL, W&B project and mode, checked."""
    if not _WANDB_PROJECT.fullmatch(args.wandb_project):
        raise SweepError(
            f"--wandb-project {args.wandb_project!r} is not allowed; allowed: 1-128 letters, "
            "digits, '_', '.', '-' (W&B writes nothing for a name with '/')"
        )
    wandb_mode = args.wandb_mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    if wandb_mode not in WANDB_MODES:
        raise SweepError(
            f"--wandb-mode {wandb_mode!r} is not allowed; allowed: {', '.join(WANDB_MODES)}"
        )
    if wandb_mode == "online" and not _wandb_logged_in():
        raise SweepError(
            "--wandb-mode online needs a W&B API key; allowed: set WANDB_API_KEY or run "
            "`wandb login`, or use --wandb-mode offline"
        )
    if not math.isfinite(args.gpus_per_learner) or not 0 <= args.gpus_per_learner <= 64:
        raise SweepError(
            f"--gpus-per-learner {args.gpus_per_learner} is not allowed; allowed: 0..64"
        )
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and not ADDRESS.fullmatch(address):
        raise SweepError(
            f"--address {address!r} is not allowed; allowed: HOST:PORT, ray://HOST:PORT, or auto"
        )
    return {
        "max_concurrent": count(
            "--max-concurrent", args.max_concurrent, max_concurrent, high=10_000
        ),
        "address": address,
        "db_url": given_db_url(args),
        "gpus_per_learner": args.gpus_per_learner,
        "wandb_project": args.wandb_project,
        "wandb_mode": wandb_mode,
    }


def _env_config(sweep: Sweep, args: argparse.Namespace) -> dict:
    """The sweep's env_config, the smoke budget's, then --env-config and --task, checked."""
    env_config = {**sweep.env_config, **(sweep.smoke.env_config if args.smoke else {})}
    if args.env_config is not None:
        extra = _strict_json(args.env_config, "--env-config")
        if not isinstance(extra, dict):
            raise SweepError(
                f"--env-config {args.env_config!r} is not allowed; allowed: a JSON object"
            )
        env_config.update(extra)
    if args.task is not None:
        for key in ("task", "tasks", "task_weights", "game", "world", "stage"):
            env_config.pop(key, None)
        env_config["task"] = args.task
    try:
        validate_env_config(env_config)
    except EnvConfigError as err:
        raise SweepError(str(err)) from None
    return env_config


def _check_trial(options: Options) -> None:
    """The trial builds (hyperparameters and search space checked before Ray), and --resume has
    an experiment to restore."""
    sweep = options.sweep
    both = sorted(set(sweep.hparams) & set(sweep.search_space))
    if both:
        # The search would silently override the fixed value (which then is never checked).
        raise SweepError(
            f"hyperparameter {both[0]!r} is both fixed (Sweep.hparams) and searched "
            "(Sweep.search_space); allowed: one of the two"
        )
    algorithm_config(options)
    if options.resume and not _can_restore(options.experiment_dir):
        raise SweepError(
            f"--resume: no interrupted sweep {options.name!r} under {options.storage_path}; "
            "allowed: the --name of a sweep started before with the same --storage-path"
        )


def _schedule(sweep: Sweep, args: argparse.Namespace, base, *, max_env_steps: int) -> dict:
    """The scheduler (ASHA, or a PBT/PB2 population) and the confirm stage, checked."""
    scheduler = args.scheduler or ("asha" if sweep.asha is not None else "pbt")
    # Pbt field -> its value on the command line (None: not given).
    given = {
        field: getattr(args, field)
        for field in ("population", "perturbation_interval", "quantile_fraction")
        if getattr(args, field) is not None
    }
    if scheduler == "asha":
        if sweep.asha is None:
            raise SweepError(
                f"--scheduler asha is not allowed: sweep {sweep.name!r} declares no ASHA; "
                "allowed: pbt, pb2"
            )
        if given:
            flag = "--" + next(iter(given)).replace("_", "-")
            raise SweepError(
                f"{flag} is not allowed with --scheduler asha; allowed: with --scheduler pbt or pb2"
            )
        asha = Schedule("asha", max_env_steps, asha=base.asha).within_budget()
        return {"schedule": asha, **_confirm_counts(sweep, args, base)}
    declared = (base.pbt if args.smoke else sweep.pbt) or Pbt()
    pbt = replace(declared, **given)
    problem = check_pbt(pbt, max_env_steps=max_env_steps)
    if problem is not None:
        raise SweepError(problem)
    if args.num_samples is not None:
        raise SweepError(
            f"--num-samples is not allowed with --scheduler {scheduler}; allowed: --population N"
        )
    if args.confirm_seeds is not None:
        raise SweepError(
            f"--confirm-seeds is not allowed with --scheduler {scheduler}: a population has no "
            "confirm stage; allowed: --scheduler asha"
        )
    if args.confirm_top:
        raise SweepError(
            f"--confirm-top {args.confirm_top} is not allowed with --scheduler {scheduler}: a "
            "PBT member's values change while it trains, so re-running its last values over seeds "
            "would not repeat it; allowed: --confirm-top 0"
        )
    if scheduler == "pb2":
        try:
            pb2_bounds(sweep.search_space)
        except ValueError as err:
            raise SweepError(str(err)) from None
    population = Schedule(scheduler, max_env_steps, pbt=pbt)
    return {"schedule": population, "confirm_top": 0, "confirm_seeds": 0}


def _confirm_counts(sweep: Sweep, args: argparse.Namespace, base) -> dict[str, int]:
    top = base.confirm_top if args.confirm_top is None else args.confirm_top
    seeds = base.confirm_seeds if args.confirm_seeds is None else args.confirm_seeds
    problem = confirm_counts_problem(
        top, seeds, top_flag="--confirm-top", seeds_flag="--confirm-seeds"
    )
    if problem is not None:
        raise SweepError(problem)
    if top and seeds and "seed" in sweep.search_space:
        raise SweepError(
            f"--confirm-top {top} is not allowed: sweep {sweep.name!r} searches 'seed' itself; "
            "allowed: --confirm-top 0"
        )
    return {"confirm_top": top, "confirm_seeds": seeds}


DEFAULT_EVAL_EVERY = 100_000
"""About every 11 minutes of a whole-machine PPO trial here (BENCHMARKS.md: its cost)."""


def eval_every(value: int | None, *, smoke: bool, max_env_steps: int, episodes: int) -> int:
    """``--eval-every``: by default every ``DEFAULT_EVAL_EVERY`` env steps of a trial at least
    that long, off in smoke runs, shorter trials and without evaluation episodes."""
    if value is None:
        off = smoke or not episodes or max_env_steps < DEFAULT_EVAL_EVERY
        return 0 if off else DEFAULT_EVAL_EVERY
    if not 0 <= value <= max_env_steps:
        raise SweepError(
            f"--eval-every {value} is not allowed; allowed: an integer in [0, {max_env_steps:,}] "
            "(the trial's env-step budget; 0: off)"
        )
    if value and not episodes:
        raise SweepError(f"--eval-every {value} needs --eval-episodes >= 1; allowed: 0 with it")
    return value


def check_eval_metric(options: "Options") -> None:
    """A sweep scored by ``eval/...`` needs evaluations during training to have a score."""
    if options.sweep.metric.startswith(EVAL_PREFIX) and not options.eval_every:
        raise SweepError(
            f"metric {options.sweep.metric!r} needs --eval-every > 0 (evaluations during "
            "training); allowed: --eval-every N, or a training metric such as mario/x_pos_last100"
        )


def eval_episodes(value: int | None, *, smoke: bool) -> int:
    if value is None:
        return 1 if smoke else 5
    if not 0 <= value <= 1_000:
        raise SweepError(
            f"--eval-episodes {value} is not allowed; allowed: an integer in [0, 1,000]"
        )
    return value


def _report_every_s(minutes: float) -> float:
    if not math.isfinite(minutes) or not 0 <= minutes <= 24 * 60:
        raise SweepError(f"--report-every {minutes} is not allowed; allowed: minutes in [0, 1440]")
    return 60 * minutes


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import wandb

    try:
        return bool(wandb.Api(timeout=5).api_key)
    except Exception:  # no key configured anywhere (wandb raises its own UsageError types)
        return False


def _storage_path(value: str | None) -> str:
    """URIs of a known scheme stay as given; local paths become absolute and must be writable."""
    if value is None:
        value = str(default_state_dir() / "ray_results")
    if not value.strip():
        raise SweepError("--storage-path '' is not allowed; allowed: a directory or a URI")
    scheme, sep, _ = value.partition("://")
    if sep:
        if scheme.lower() not in STORAGE_SCHEMES:
            raise SweepError(
                f"--storage-path {value!r} is not allowed; allowed: a local directory or a "
                f"URI with scheme {', '.join(STORAGE_SCHEMES)}"
            )
        return value
    path = Path(value).expanduser().resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise SweepError(f"--storage-path {value!r} is not allowed: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SweepError(f"--storage-path {value!r} is not allowed: {existing} is not writable")
    return str(path)


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace, *, prog: str) -> str:
    """The launch command rebuilt from the *parsed* options, with any database password masked.

    Rebuilding (rather than masking argv text) covers every spelling argparse accepts:
    ``--db-url=...``, ``--db-url ...``, abbreviations such as ``--db ...``.
    """
    words = [sys.executable, prog]
    for action in parser._actions:  # argparse's documented way to list a parser's options
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or value == action.default:
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        else:
            words += [flag, mask_url(value) if action.dest == "db_url" else str(value)]
    return shlex.join(words)


def _can_restore(experiment: str) -> bool:
    try:
        return Tuner.can_restore(experiment)
    except Exception:  # an unreachable bucket is as good as no experiment here
        return False


def warn_about_password(db_url: str) -> None:
    """One masked line: a URL password is visible in process lists and Ray's job API."""
    if has_password(db_url):
        print(
            f"warning: the database URL carries a password ({mask_url(db_url)}); {PASSWORD_ADVICE}",
            file=sys.stderr,
        )


def algorithm_config(options: Options, *, search_space: dict | None = None):
    """The trial's AlgorithmConfig with the search space's Tune domains in place (the sweep's,
    or ``search_space``'s: the confirm stage searches the configs and seeds it re-runs)."""
    sweep = options.sweep
    if search_space is None:
        search_space = sweep.search_space
    builder = BUILDERS.get(sweep.algo)
    if builder is None:
        raise SweepError(f"algo {sweep.algo!r} is not allowed; allowed: {', '.join(BUILDERS)}")
    try:
        config = builder(
            env_config=options.env_config,
            hparams={**options.hparams, **search_space},
            resources=Resources(num_gpus_per_learner=options.gpus_per_learner),
            schedule_env_steps=options.max_env_steps,
            **({"clones": options.clone_dir} if options.demos else {}),
        )
    except (HParamError, EnvConfigError) as err:
        raise SweepError(str(err)) from None
    if not options.eval_every:
        return config.callbacks(EpisodeRecorder)
    evaluation = periodic_evaluation(options.eval_every, options.eval_episodes)
    return config.callbacks([EpisodeRecorder, evaluation])
