"""The shared sweep runner: every sweep file calls ``main(SWEEP)``; ``run`` reads in one screen.

The order is deliberate, and it is the order of :func:`run`:

1. ``parse_options``: every flag, the env_config, the hyperparameters and the storage path are
   checked (no Ray, no database): a bad value is one line and exit code 2;
2. ``prepare_database``: connect, migrate the schema once, and check the sweep's name is free (or,
   with ``--resume``, that there is a sweep to continue);
3. ``connect_ray``: join ``--address`` (checked reachable first) or start a local Ray with the
   dashboard on 127.0.0.1, and check the cluster has the resources the trials ask for;
4. ``build_tuner``: pure builders — searcher, scheduler, stopper, callbacks — into a ``Tuner``;
5. ``tuner.fit()``: only now is anything written: ``PostgresCallback.setup`` creates the sweep row;
   meanwhile ``LiveReport`` rewrites the HTML report every few minutes;
6. the best checkpoint played (``evaluate_at_end``), then the confirm stage (``confirm_at_end``,
   :mod:`sweeps.confirm`): the top ``--confirm-top`` configs re-run over ``--confirm-seeds``
   fresh seeds, ranked by IQM with bootstrap intervals;
7. the leaderboard read back from the database (confirmed configs first) and the final report.

So nothing is written (no sweep row, no Optuna study, no experiment directory) until Ray is
connected and every input has been accepted.
"""

import argparse
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from algos import CheckpointError, HParamError, Resources, dqn_config, ppo_config
from callbacks.collapse import SweepStopper
from callbacks.decisions import DecisionMemory
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.store import (
    StoreError,
    default_state_dir,
    embedded_db_url,
    find_sweep,
    has_password,
    mask_url,
    prepare_database,
    resolve_db_url,
    set_sweep_status,
    validate_db_url,
)
from envs import EnvConfigError, register_mario_env, validate_env_config
from sweeps.console import quiet_ray_notices, use_progress_table
from sweeps.live import LiveReport
from sweeps.spec import SCHEDULERS, Pbt, Sweep, check_pbt

__all__ = ["Options", "SweepError", "build_tuner", "main", "parse_options", "run"]

BUILDERS = {"PPO": ppo_config, "DQN": dqn_config}
WANDB_MODES = ("offline", "online", "disabled")
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "file")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_ADDRESS = re.compile(r"auto|local|ray://[^\s/:]+:\d{1,5}|[^\s/:]+:\d{1,5}")
MAX_ENV_STEPS = 10**12
"""Far beyond any run (1M steps take a day here) and safe in PostgreSQL's bigint."""
PASSWORD_ADVICE = "put database passwords in PGPASSWORD or ~/.pgpass, not in --db-url"


class SweepError(ValueError):
    """A flag or configuration value the sweep cannot run with (reported in one line)."""


@dataclass(frozen=True)
class Options:
    """The validated command line, merged with the sweep's declaration."""

    sweep: Sweep
    name: str
    num_samples: int
    max_env_steps: int
    max_concurrent: int
    address: str | None
    db_url: str | None
    wandb_project: str
    wandb_mode: str
    resume: bool
    smoke: bool
    storage_path: str
    """A local directory or a URI (s3://, gs://) that every node can reach."""
    gpus_per_learner: float
    env_config: dict
    hparams: dict
    command: str
    """The launch command rebuilt from the parsed options, password masked (stored on the row)."""
    eval_episodes: int
    """Episodes the best checkpoint plays at the end (0: no evaluation)."""
    eval_sample: bool
    report_every_s: float
    """Seconds between refreshes of the HTML report while the sweep runs (0: only at the end)."""
    confirm_top: int
    """Distinct configs the confirm stage re-runs over fresh seeds (0: no confirm stage)."""
    confirm_seeds: int
    scheduler: str = "asha"
    """``asha`` (with Optuna), or ``pbt`` / ``pb2`` (a population, :mod:`sweeps.pbt`)."""
    pbt: Pbt | None = None
    """The population and its perturbation settings when ``scheduler`` is pbt or pb2."""

    @property
    def report_dir(self) -> Path:
        """Beside the experiment when it is local, else under the state dir."""
        if "://" in self.storage_path:
            return default_state_dir() / "reports" / self.name
        return Path(self.experiment_dir)

    @property
    def experiment_dir(self) -> str:
        return f"{self.storage_path}/{self.name}"


# -- 1. options ---------------------------------------------------------------------------------


def _parser(sweep: Sweep) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
        "--max-concurrent", type=int, help=f"trials at once (default {sweep.max_concurrent})"
    )
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else local Ray)")
    p.add_argument(
        "--db-url",
        help="PostgreSQL URL for results (default: MARIO_SWEEPS_DB_URL, else embedded "
        f"PostgreSQL); {PASSWORD_ADVICE}",
    )
    p.add_argument("--wandb-project", default="mario-sweeps", help="W&B project")
    p.add_argument("--wandb-mode", help="offline (default without WANDB_API_KEY), online, disabled")
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
    p.add_argument(
        "--gpus-per-learner", type=float, default=0.0, help="GPUs for each trial's learner"
    )
    p.add_argument(
        "--eval-episodes",
        type=int,
        help="episodes to play with the best checkpoint at the end (default 5, --smoke 1; 0: off)",
    )
    p.add_argument(
        "--eval-sample", action="store_true", help="also evaluate sampling from the policy"
    )
    p.add_argument(
        "--confirm-top",
        type=int,
        help=f"after the search, re-run the best K configs over fresh seeds (default "
        f"{sweep.confirm_top}, --smoke {sweep.smoke.confirm_top}; 0: off)",
    )
    p.add_argument(
        "--confirm-seeds",
        type=int,
        help=f"seeds per confirmed config (default {sweep.confirm_seeds}, --smoke "
        f"{sweep.smoke.confirm_seeds})",
    )
    p.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help="asha: Optuna TPE + ASHA (default); pbt / pb2: population-based training of "
        f"{(sweep.pbt or Pbt()).population} members"
        + (" (this sweep's default)" if sweep.asha is None else ""),
    )
    p.add_argument("--population", type=int, help="PBT/PB2 members (default from the sweep file)")
    p.add_argument(
        "--perturbation-interval",
        type=int,
        help="PBT/PB2: env steps between a member's exploit/explore decisions",
    )
    p.add_argument(
        "--quantile-fraction",
        type=float,
        help="PBT/PB2: the bottom fraction copies from the top fraction (0 < f <= 0.5)",
    )
    p.add_argument(
        "--report-every",
        type=float,
        default=5.0,
        help="minutes between refreshes of the HTML report during the sweep (0: at the end only)",
    )
    return p


def _count(flag: str, value: int | None, default: int, *, high: int) -> int:
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
    parser = _parser(sweep)
    args = parser.parse_args(argv)
    base = sweep.smoke if args.smoke else sweep
    name = (args.name or (f"{sweep.name}-smoke" if args.smoke else sweep.name)) + name_suffix
    if not _NAME.fullmatch(name):
        raise SweepError(
            f"--name {name!r} is not allowed; allowed: 1-63 letters, digits, '_', '.', '-'"
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
    if address is not None and not _ADDRESS.fullmatch(address):
        raise SweepError(
            f"--address {address!r} is not allowed; allowed: HOST:PORT, ray://HOST:PORT, or auto"
        )
    db_url = resolve_db_url(args.db_url)
    if db_url is not None:
        try:
            validate_db_url(db_url)
        except StoreError as err:
            raise SweepError(f"--db-url: {err}") from None
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
    max_env_steps = _count(
        "--max-env-steps", args.max_env_steps, base.max_env_steps, high=MAX_ENV_STEPS
    )
    schedule = _schedule(sweep, args, base, max_env_steps=max_env_steps)
    options = Options(
        sweep=sweep,
        name=name,
        num_samples=schedule["pbt"].population
        if schedule["pbt"]
        else _count("--num-samples", args.num_samples, base.num_samples, high=100_000),
        max_env_steps=max_env_steps,
        max_concurrent=_count(
            "--max-concurrent", args.max_concurrent, base.max_concurrent, high=10_000
        ),
        address=address,
        db_url=db_url,
        wandb_project=args.wandb_project,
        wandb_mode=wandb_mode,
        resume=args.resume,
        smoke=args.smoke,
        storage_path=_storage_path(args.storage_path),
        gpus_per_learner=args.gpus_per_learner,
        env_config=env_config,
        hparams={**sweep.hparams, **(sweep.smoke.hparams if args.smoke else {})},
        command=_command(
            parser, args, prog=sys.argv[0] if argv is None else f"sweeps/{sweep.name}.py"
        ),
        eval_episodes=_eval_episodes(args.eval_episodes, smoke=args.smoke),
        eval_sample=args.eval_sample,
        report_every_s=_report_every_s(args.report_every),
        **schedule,
    )
    both = sorted(set(sweep.hparams) & set(sweep.search_space))
    if both:
        # The search would silently override the fixed value (which then is never checked).
        raise SweepError(
            f"hyperparameter {both[0]!r} is both fixed (Sweep.hparams) and searched "
            "(Sweep.search_space); allowed: one of the two"
        )
    algorithm_config(options)  # hyperparameters and search space checked here, before Ray
    if options.resume and not _can_restore(options.experiment_dir):
        raise SweepError(
            f"--resume: no interrupted sweep {name!r} under {options.storage_path}; "
            "allowed: the --name of a sweep started before with the same --storage-path"
        )
    return options


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
        return {"scheduler": scheduler, "pbt": None, **_confirm_counts(sweep, args, base)}
    declared = (base.pbt if args.smoke else sweep.pbt) or Pbt()
    pbt = replace(declared, **given)
    problem = check_pbt(pbt, max_env_steps=max_env_steps)
    if problem is not None:
        raise SweepError(problem)
    if args.num_samples is not None:
        raise SweepError(
            f"--num-samples is not allowed with --scheduler {scheduler}; allowed: --population N"
        )
    if args.confirm_top:
        raise SweepError(
            f"--confirm-top {args.confirm_top} is not allowed with --scheduler {scheduler}: a "
            "PBT member's values change while it trains, so re-running its last values over seeds "
            "would not repeat it; allowed: --confirm-top 0"
        )
    if scheduler == "pb2":
        from sweeps.pbt import pb2_bounds

        try:
            pb2_bounds(sweep.search_space)
        except ValueError as err:
            raise SweepError(str(err)) from None
    return {"scheduler": scheduler, "pbt": pbt, "confirm_top": 0, "confirm_seeds": 0}


def _confirm_counts(sweep: Sweep, args: argparse.Namespace, base) -> dict[str, int]:
    from sweeps.confirm import ConfirmError, check_counts

    top = base.confirm_top if args.confirm_top is None else args.confirm_top
    seeds = base.confirm_seeds if args.confirm_seeds is None else args.confirm_seeds
    try:
        check_counts(top, seeds, top_flag="--confirm-top", seeds_flag="--confirm-seeds")
    except ConfirmError as err:
        raise SweepError(str(err)) from None
    if top and seeds and "seed" in sweep.search_space:
        raise SweepError(
            f"--confirm-top {top} is not allowed: sweep {sweep.name!r} searches 'seed' itself; "
            "allowed: --confirm-top 0"
        )
    return {"confirm_top": top, "confirm_seeds": seeds}


def _eval_episodes(value: int | None, *, smoke: bool) -> int:
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
    from ray.tune import Tuner

    try:
        return Tuner.can_restore(experiment)
    except Exception:  # an unreachable bucket is as good as no experiment here
        return False


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
        )
    except (HParamError, EnvConfigError) as err:
        raise SweepError(str(err)) from None
    return config.callbacks(EpisodeRecorder)


# -- 2. database --------------------------------------------------------------------------------


def check_database(options: Options, db_url: str) -> None:
    """Migrate once and check the name: free for a new sweep, present for ``--resume``."""
    try:
        prepare_database(db_url)
        existing = find_sweep(db_url, options.name)
    except StoreError as err:
        raise SweepError(str(err)) from None
    if existing is not None and not options.resume:
        raise SweepError(
            f"a sweep named {options.name!r} already exists (id {existing['id']}, "
            f"{existing['status']}, {existing['trials']} trials, started "
            f"{existing['started_at']:%Y-%m-%d %H:%M}); continue it with --resume --name "
            f"{options.name}, or pick a new --name"
        )


# -- 3. Ray -------------------------------------------------------------------------------------


def connect_ray(options: Options) -> str:
    """Join the cluster (checked reachable first) or start a local Ray; return the dashboard."""
    import ray

    quiet_ray_notices()
    use_progress_table()
    runtime_env = {
        "env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"},
        "worker_process_setup_hook": "sweeps.console.quiet_ray_notices",
    }
    if options.address not in (None, "auto", "local"):
        _check_reachable(options.address)
    if options.address is not None:
        context = ray.init(address=options.address, runtime_env=runtime_env)
    else:
        context = ray.init(
            include_dashboard=True, dashboard_host="127.0.0.1", runtime_env=runtime_env
        )
    gpus = ray.cluster_resources().get("GPU", 0)
    if options.gpus_per_learner > gpus:
        ray.shutdown()
        raise SweepError(
            f"--gpus-per-learner {options.gpus_per_learner:g} is not allowed: the Ray cluster "
            f"has {gpus:g} GPUs; allowed: 0 here, or a cluster with a GPU node"
        )
    return f"http://{context.dashboard_url}" if context.dashboard_url else "(dashboard not running)"


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds where ``ray.init`` would retry an unreachable GCS for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise SweepError(
            f"--address {address!r} is not reachable ({err.strerror or err}); allowed: the "
            "address of a running Ray head (ray start --head prints it)"
        ) from None


# -- 4. the Tuner -------------------------------------------------------------------------------


def build_tuner(options: Options, db_url: str):
    """The Tuner for a new or restored sweep: searcher, scheduler, stopper and callbacks."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    sweep = options.sweep
    config = algorithm_config(options)
    population = options.scheduler in ("pbt", "pb2")
    if options.resume:
        # Tune restores the searcher, scheduler, stopper and callbacks it pickled at the start.
        return tune.Tuner.restore(
            options.experiment_dir,
            trainable=config.algo_class,
            param_space=config,
            resume_unfinished=True,
            restart_errored=True,
        )
    if population:
        from sweeps.pbt import pbt_scheduler

        scheduler = pbt_scheduler(
            options.scheduler,
            pbt=options.pbt,
            metric=sweep.metric,
            mode=sweep.mode,
            search_space=sweep.search_space,
            lineage_key=options.name,
        )
        recorded = {"type": options.scheduler.upper(), **vars(options.pbt)}
        search = {"max_concurrent_trials": options.max_concurrent}  # Tune's own sampling
    else:
        from sweeps.search import asha_scheduler, optuna_searcher

        asha = (sweep.smoke.asha if options.smoke else sweep.asha).within(options.max_env_steps)
        scheduler = asha_scheduler(
            metric=sweep.metric,
            mode=sweep.mode,
            max_env_steps=options.max_env_steps,
            grace_period=asha.grace_period,
            reduction_factor=asha.reduction_factor,
        )
        recorded = {"type": "ASHA", **vars(asha)}
        searcher = optuna_searcher(
            db_url=db_url,
            study_name=f"mario-sweeps/{options.name}",
            metric=sweep.metric,
            mode=sweep.mode,
            seed=sweep.seed,
            points_to_evaluate=sweep.points_to_evaluate,
        )
        search = {"search_alg": ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent)}
    return tune.Tuner(
        config.algo_class,
        param_space=config,
        tune_config=tune.TuneConfig(
            scheduler=scheduler,
            num_samples=options.num_samples,
            trial_dirname_creator=trial_dirname,
            **search,
        ),
        run_config=run_config(
            options,
            name=options.name,
            callbacks=build_callbacks(options, db_url, scheduler=recorded),
            population=population,
            scheduler=scheduler,
        ),
    )


def run_config(
    options: Options,
    *,
    name: str,
    callbacks: list,
    population: bool = False,
    scheduler=None,
    extra_params: tuple[str, ...] = (),
):
    """What every trial of a sweep (search or confirm) runs under: the budget and collapse
    stopper, Tune's checkpoint keeping by the sweep's metric, one retry, our console table; the
    scheduler's and stopper's state saved with the experiment (``DecisionMemory``)."""
    from ray import tune

    sweep = options.sweep
    # Under PBT a collapsing member is recorded, and left for exploit to replace.
    stopper = SweepStopper(
        metric=sweep.metric,
        mode=sweep.mode,
        max_env_steps=options.max_env_steps,
        collapse=sweep.collapse,
        stop_on_collapse=not population,
    )
    return tune.RunConfig(
        name=name,
        storage_path=options.storage_path,
        stop=stopper,
        callbacks=[*callbacks, DecisionMemory(scheduler=scheduler, stopper=stopper)],
        checkpoint_config=tune.CheckpointConfig(
            # PBT copies a donor's latest checkpoint: keep enough that it is still there.
            num_to_keep=4 if population else 2,
            checkpoint_score_attribute=sweep.metric,
            checkpoint_score_order=sweep.mode,
            checkpoint_frequency=sweep.checkpoint_every,
            checkpoint_at_end=True,
        ),
        failure_config=tune.FailureConfig(max_failures=1),
        progress_reporter=progress_reporter(options, extra_params=extra_params),
        verbose=1,
    )


def build_callbacks(
    options: Options,
    db_url: str,
    *,
    scheduler: dict,
    stage: str = "search",
    repeats: dict | None = None,
    num_samples: int | None = None,
) -> list:
    """PostgresCallback first (it pops the episode list), then W&B."""
    from callbacks.postgres_callback import PostgresCallback
    from callbacks.store.tables import json_safe
    from callbacks.wandb_logger import MarioWandbLoggerCallback
    from sweeps.stats import FINAL_METRIC, final_tail_env_steps

    sweep = options.sweep
    tail = final_tail_env_steps(options.max_env_steps)
    callbacks = [
        PostgresCallback(
            db_url=db_url,
            sweep={
                "name": options.name,
                "algo": sweep.algo,
                "search_space": json_safe(sweep.search_space),
                "metric": sweep.metric,
                "mode": sweep.mode,
                "scheduler": {
                    "time_attr": "num_env_steps_sampled_lifetime",
                    "max_t": options.max_env_steps,
                    **scheduler,
                    "collapse": vars(sweep.collapse),
                },
                "command": options.command,
                "code_version": _code_version(),
                "ray_address": options.address or "local",
                "settings": json_safe(
                    {
                        "env_config": options.env_config,
                        "hparams": options.hparams,
                        "max_env_steps": options.max_env_steps,
                        "checkpoint_every": sweep.checkpoint_every,
                        "collapse": vars(sweep.collapse),
                        "storage_path": options.storage_path,
                        "smoke": options.smoke,
                        "confirm": {"top": options.confirm_top, "seeds": options.confirm_seeds},
                        "final_metric": {"definition": FINAL_METRIC, "tail_env_steps": tail},
                    }
                ),
            },
            param_keys=list(sweep.search_space),
            num_samples=options.num_samples if num_samples is None else num_samples,
            scheduler="pbt" if options.scheduler in ("pbt", "pb2") else "asha",
            stage=stage,
            repeats=repeats,
            final_tail_env_steps=tail,
            lineage=options.scheduler in ("pbt", "pb2"),
        )
    ]
    if options.wandb_mode != "disabled":
        callbacks.append(
            MarioWandbLoggerCallback(
                project=options.wandb_project, group=options.name, mode=options.wandb_mode
            )
        )
    return callbacks


def progress_reporter(options: Options, *, extra_params: tuple[str, ...] = ()):
    """The console table: our metric, best x_pos, flags, episodes, env steps, searched params
    (and ``extra_params``: the confirm stage's seed)."""
    from ray.tune import CLIReporter

    return CLIReporter(
        metric_columns={
            options.sweep.metric: "metric",
            "mario/x_pos_max": "x_pos max",
            "mario/flags": "flags",
            "mario/episodes": "episodes",
            "num_env_steps_sampled_lifetime": "env steps",
        },
        parameter_columns=[*options.sweep.search_space, *extra_params],
        max_report_frequency=30,
    )


def trial_dirname(trial) -> str:
    """Short trial directory names (names derived from an AlgorithmConfig are huge)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def _code_version() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


# -- the whole sweep ----------------------------------------------------------------------------


def run(options: Options) -> int:
    """Run (or resume) the sweep; return the process exit code."""
    import ray

    from sweeps.report import leaderboard

    db_url = options.db_url or embedded_db_url()
    check_database(options, db_url)
    warn_about_password(db_url)
    register_mario_env()
    dashboard = connect_ray(options)
    try:
        tuner = build_tuner(options, db_url)
        _print_header(options, dashboard, db_url)
        signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
        try:
            with LiveReport(
                db_url, options.name, options.report_dir, every_s=options.report_every_s
            ):
                results = tuner.fit()  # one Ctrl-C (or SIGTERM) ends it gracefully
        except Exception:
            set_sweep_status(db_url, options.name, "failed")
            raise
        sweep = find_sweep(db_url, options.name)
        interrupted = sweep is not None and sweep["status"] == "interrupted"
        if not interrupted:
            evaluate_at_end(options, db_url)
            interrupted = not confirm_at_end(options, db_url)
        print(leaderboard(db_url, options.name))
        print(f"report      {write_final_report(options, db_url)}")
        if interrupted:
            print(f"interrupted: continue with --resume --name {options.name}", file=sys.stderr)
            return 130
        return 1 if results.num_errors and results.num_errors == len(results) else 0
    except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune took over
        set_sweep_status(db_url, options.name, "interrupted")
        print(f"interrupted: continue with --resume --name {options.name}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        ray.shutdown()  # each sweep of sweeps/dqn_vs_ppo.py gets its own Ray session


def write_final_report(options: Options, db_url: str) -> str:
    """The report with everything the sweep recorded; a problem with it never fails the sweep."""
    from sweeps.queries import ReportError
    from sweeps.report import write_report

    try:
        return str(write_report(db_url, options.name, options.report_dir))
    except (ReportError, StoreError, OSError) as err:
        return f"(not written: {err})"


def confirm_at_end(options: Options, db_url: str) -> bool:
    """The confirm stage (``--confirm-top``/``--confirm-seeds``); False if it was interrupted."""
    from sweeps.confirm import ConfirmError, run_confirm

    if not (options.confirm_top and options.confirm_seeds):
        return True
    try:
        with LiveReport(db_url, options.name, options.report_dir, every_s=options.report_every_s):
            return run_confirm(
                options, db_url, top=options.confirm_top, seeds=options.confirm_seeds
            )
    except ConfirmError as err:  # e.g. no trial reported a metric: nothing to confirm
        print(f"confirm     skipped: {err}", file=sys.stderr)
        return True


def evaluate_at_end(options: Options, db_url: str) -> None:
    """Play the best checkpoint (``--eval-episodes``), store the episodes, keep the video."""
    from sweeps.evaluation import evaluate_best

    if not options.eval_episodes:
        return
    experiment = None if "://" in options.storage_path else Path(options.experiment_dir)
    for evaluation in evaluate_best(
        db_url,
        options.name,
        episodes=options.eval_episodes,
        sample=options.eval_sample,
        out_dir=options.report_dir,
        wandb_mode=options.wandb_mode,
        wandb_project=options.wandb_project,
        experiment_dir=experiment,
    ):
        print(evaluation.summary())


def warn_about_password(db_url: str) -> None:
    """One masked line: a URL password is visible in process lists and Ray's job API."""
    if has_password(db_url):
        print(
            f"warning: the database URL carries a password ({mask_url(db_url)}); {PASSWORD_ADVICE}",
            file=sys.stderr,
        )


def _print_header(options: Options, dashboard: str, db_url: str) -> None:
    wandb = f"{options.wandb_mode}, project {options.wandb_project}"
    if options.wandb_mode != "disabled":
        wandb += f", run files in {options.experiment_dir}/<trial>/wandb"
    print(
        f"sweep       {options.name} ({options.sweep.algo}, {options.num_samples} trials, "
        f"{options.max_env_steps:,} env steps each)\n"
        f"dashboard   {dashboard}\n"
        f"database    {mask_url(db_url)}\n"
        f"report      {options.report_dir}/ (refreshed every "
        f"{options.report_every_s / 60:g} min; open the .html in a browser)\n"
        f"w&b         {wandb}"
        + (
            f"\n            upload later: wandb sync {options.experiment_dir}/*/wandb/offline-run-*"
            if options.wandb_mode == "offline"
            else ""
        )
        + f"\nscheduler   {_scheduler_line(options)}"
    )


def _scheduler_line(options: Options) -> str:
    """What schedules the trials, and (for PBT) which of the usual pieces do not apply."""
    if options.pbt is None:
        return "Optuna TPE (study in the results database) + ASHA on env steps + collapse stops"
    pbt = options.pbt
    return (
        f"{options.scheduler.upper()}: population {pbt.population}, exploit/explore every "
        f"{pbt.perturbation_interval:,} env steps, bottom {pbt.quantile_fraction:.0%} copies the "
        f"top {pbt.quantile_fraction:.0%}; {options.max_concurrent} members train at once (Tune "
        "pauses the rest). No Optuna study (the population starts from the search space), no "
        "ASHA rungs; collapses are recorded, not stopped"
    )


def compare(sweeps: list[Sweep], argv: list[str] | None = None) -> int:
    """Run several sweeps with the same flags, one after the other, then compare them over
    their trials' final metrics (``python -m sweeps.compare``: IQM, CIs, a verdict).

    Each runs as ``<name>-<algo>`` (``dqn_vs_ppo-ppo``). Every sweep's options and name are
    checked before the first one starts.
    """
    from sweeps.compare import comparison_report
    from sweeps.confirm import ConfirmError
    from sweeps.stats import StatsError

    try:
        runs = [
            parse_options(sweep, argv, name_suffix=f"-{sweep.algo.lower()}") for sweep in sweeps
        ]
        db_url = runs[0].db_url or embedded_db_url()
        for options in runs:
            check_database(options, db_url)
        for options in runs:
            code = run(options)
            if code != 0:
                return code
        try:
            print(comparison_report(db_url, [o.name for o in runs]))
        except (ConfirmError, StatsError) as err:  # e.g. too few finished trials for a CI
            print(f"comparison: {err}", file=sys.stderr)
        return 0
    except (SweepError, CheckpointError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def main(sweep: Sweep, argv: list[str] | None = None) -> int:
    """Entry point of every sweep file: ``sys.exit(main(SWEEP))``."""
    try:
        return run(parse_options(sweep, argv))
    except (SweepError, CheckpointError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
