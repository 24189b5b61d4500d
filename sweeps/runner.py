"""The shared sweep runner: CLI, validation, Ray, the results store, Optuna, ASHA, W&B, report.

Every sweep file calls ``main(SWEEP)``. The order is deliberate:

1. parse and validate every flag, the env_config and the hyperparameters (no Ray, no database);
2. open the results store (embedded PostgreSQL unless ``--db-url``) and check we can write;
3. connect Ray (local with the dashboard on 127.0.0.1, or ``--address`` / ``RAY_ADDRESS``);
4. create (or, with ``--resume``, reopen) the sweep row, run the Tuner, print the leaderboard.

So a bad flag, env option, hyperparameter or database URL fails in step 1 or 2 with one line and
exit code 2, before Ray starts and before any row is written.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from algos import CheckpointError, HParamError, Resources, dqn_config, ppo_config
from callbacks.collapse import SweepStopper
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.store import (
    ResultsStore,
    StoreError,
    default_state_dir,
    embedded_db_url,
    mask_url,
    prepare_database,
    resolve_db_url,
    validate_db_url,
)
from envs import EnvConfigError, register_mario_env, validate_env_config
from sweeps.spec import Sweep

__all__ = ["SweepError", "Options", "parse_options", "main"]

BUILDERS = {"PPO": ppo_config, "DQN": dqn_config}
WANDB_MODES = ("offline", "online", "disabled")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


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


def _parser(sweep: Sweep) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python sweeps/{sweep.name}.py",
        description=f"{sweep.algo} sweep '{sweep.name}' over {', '.join(sweep.search_space)} "
        f"(Optuna TPE + ASHA on env steps + collapse detection).",
    )
    p.add_argument("--num-samples", type=int, help=f"trials to run (default {sweep.num_samples})")
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
        help="PostgreSQL URL for results (default: MARIO_SWEEPS_DB_URL, else embedded PostgreSQL)",
    )
    p.add_argument("--wandb-project", default="mario-sweeps", help="W&B project")
    p.add_argument(
        "--wandb-mode",
        help="offline (default without WANDB_API_KEY), online, or disabled",
    )
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
    return p


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if value < 1:
        raise SweepError(f"{name} {value} is not allowed; allowed: an integer >= 1")
    return value


def parse_options(sweep: Sweep, argv: list[str] | None = None) -> Options:
    """Parse and validate the command line; raise ``SweepError`` with one line on bad input."""
    args = _parser(sweep).parse_args(argv)
    base = sweep.smoke if args.smoke else sweep
    name = args.name or (f"{sweep.name}-smoke" if args.smoke else sweep.name)
    if not _NAME.match(name):
        raise SweepError(
            f"--name {name!r} is not allowed; allowed: 1-63 letters, digits, '_', '.', '-'"
        )
    wandb_mode = args.wandb_mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    if wandb_mode not in WANDB_MODES:
        raise SweepError(
            f"--wandb-mode {wandb_mode!r} is not allowed; allowed: {', '.join(WANDB_MODES)}"
        )
    if args.gpus_per_learner < 0:
        raise SweepError(
            f"--gpus-per-learner {args.gpus_per_learner} is not allowed; allowed: >= 0"
        )
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and not re.match(r"^(auto|local|ray://[^\s/]+|[^\s/:]+:\d+)$", address):
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
        try:
            extra = json.loads(args.env_config)
        except json.JSONDecodeError as err:
            raise SweepError(f"--env-config {args.env_config!r} is not JSON ({err.msg})") from None
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
    hparams = {**sweep.hparams, **(sweep.smoke.hparams if args.smoke else {})}
    options = Options(
        sweep=sweep,
        name=name,
        num_samples=_positive("--num-samples", args.num_samples, base.num_samples),
        max_env_steps=_positive("--max-env-steps", args.max_env_steps, base.max_env_steps),
        max_concurrent=_positive("--max-concurrent", args.max_concurrent, base.max_concurrent),
        address=address,
        db_url=db_url,
        wandb_project=args.wandb_project,
        wandb_mode=wandb_mode,
        resume=args.resume,
        smoke=args.smoke,
        storage_path=_storage_path(args.storage_path),
        gpus_per_learner=args.gpus_per_learner,
        env_config=env_config,
        hparams=hparams,
    )
    algorithm_config(options)  # hyperparameters and search space checked here, before Ray
    if options.resume and not _can_restore(f"{options.storage_path}/{name}"):
        raise SweepError(
            f"--resume: no interrupted sweep {name!r} under {options.storage_path}; "
            "allowed: the --name of a sweep started before with the same --storage-path"
        )
    return options


def _storage_path(value: str | None) -> str:
    """URIs stay as given; local paths become absolute (Tune needs that)."""
    if value is None:
        return str(default_state_dir() / "ray_results")
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def _can_restore(experiment: str) -> bool:
    from ray.tune import Tuner

    try:
        return Tuner.can_restore(experiment)
    except Exception:  # an unreachable bucket is as good as no experiment here
        return False


def algorithm_config(options: Options):
    """The trial's AlgorithmConfig with the search space's Tune domains in place."""
    sweep = options.sweep
    builder = BUILDERS.get(sweep.algo)
    if builder is None:
        raise SweepError(f"algo {sweep.algo!r} is not allowed; allowed: {', '.join(BUILDERS)}")
    try:
        config = builder(
            env_config=options.env_config,
            hparams={**options.hparams, **sweep.search_space},
            resources=Resources(num_gpus_per_learner=options.gpus_per_learner),
        )
    except (HParamError, EnvConfigError) as err:
        raise SweepError(str(err)) from None
    return config.callbacks(EpisodeRecorder)


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


def _trial_dirname(trial) -> str:
    """Short trial directory names (names derived from an AlgorithmConfig are huge)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def _safe_command() -> str:
    """The launch command as stored on the sweep row, with any database password masked."""
    args = []
    for arg in [sys.executable, *sys.argv]:
        if arg.startswith("--db-url="):
            arg = "--db-url=" + mask_url(arg.removeprefix("--db-url="))
        elif arg.startswith("postgres"):
            arg = mask_url(arg)
        args.append(arg)
    return shlex.join(args)


def _connect_ray(options: Options) -> str:
    """Join the cluster or start a local Ray; return the dashboard URL."""
    import ray

    runtime_env = {"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}}
    if options.address is not None:
        context = ray.init(address=options.address, runtime_env=runtime_env)
    else:
        context = ray.init(
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            runtime_env=runtime_env,
        )
    return f"http://{context.dashboard_url}" if context.dashboard_url else "(dashboard not running)"


def run(options: Options) -> int:
    """Run (or resume) the sweep; return the process exit code."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from callbacks.postgres_callback import PostgresCallback
    from callbacks.wandb_logger import MarioWandbLoggerCallback
    from sweeps.report import leaderboard
    from sweeps.search import asha_scheduler, optuna_searcher

    sweep = options.sweep
    db_url = options.db_url or embedded_db_url()
    try:
        prepare_database(db_url)
    except StoreError as err:
        raise SweepError(str(err)) from None
    # WandbLoggerCallback skips its API-key check only when the driver's environment says
    # offline/disabled; this process is the sweep's driver, so setting it here is scoped to us.
    os.environ["WANDB_MODE"] = options.wandb_mode
    config = algorithm_config(options)
    experiment_dir = f"{options.storage_path}/{options.name}"
    store = ResultsStore(db_url)
    stopper = SweepStopper(
        metric=sweep.metric,
        mode=sweep.mode,
        max_env_steps=options.max_env_steps,
        drop_fraction=sweep.collapse.drop_fraction,
        window=sweep.collapse.window,
        min_peak=sweep.collapse.min_peak,
        grace_env_steps=sweep.collapse.grace_env_steps,
    )
    asha = (sweep.smoke.asha if options.smoke else sweep.asha).within(options.max_env_steps)
    try:
        sweep_id = store.start_sweep(
            name=options.name,
            algo=sweep.algo,
            search_space={k: str(v) for k, v in sweep.search_space.items()},
            metric=sweep.metric,
            mode=sweep.mode,
            scheduler={
                "type": "ASHA",
                "time_attr": "num_env_steps_sampled_lifetime",
                "max_t": options.max_env_steps,
                "grace_period": asha.grace_period,
                "reduction_factor": asha.reduction_factor,
                "collapse": vars(sweep.collapse),
            },
            command=_safe_command(),
            code_version=_code_version(),
            ray_address=options.address or "local",
            resume=options.resume,
        )
    except StoreError as err:  # e.g. the name exists and --resume was not given
        store.close()
        raise SweepError(str(err)) from None
    try:
        register_mario_env()
        dashboard = _connect_ray(options)
        print(
            f"sweep       {options.name} ({sweep.algo}, {options.num_samples} trials, "
            f"{options.max_env_steps:,} env steps each)"
        )
        print(f"dashboard   {dashboard}")
        print(f"database    {mask_url(db_url)}")
        print(
            f"w&b         {options.wandb_mode}, project {options.wandb_project}, run files in "
            f"{experiment_dir}/<trial>/wandb"
            + (" (sync: wandb sync <dir>)" if options.wandb_mode == "offline" else "")
        )
        callbacks = [
            PostgresCallback(
                db_url=db_url,
                sweep_id=sweep_id,
                metric=sweep.metric,
                mode=sweep.mode,
                max_env_steps=options.max_env_steps,
                stopper=stopper,
                param_keys=list(sweep.search_space),
            )
        ]
        if options.wandb_mode != "disabled":
            callbacks.append(
                MarioWandbLoggerCallback(
                    project=options.wandb_project, group=options.name, mode=options.wandb_mode
                )
            )
        run_config = tune.RunConfig(
            name=options.name,
            storage_path=options.storage_path,
            stop=stopper,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2,
                checkpoint_score_attribute=sweep.metric,
                checkpoint_score_order=sweep.mode,
                checkpoint_frequency=sweep.checkpoint_every,
                checkpoint_at_end=True,
            ),
            failure_config=tune.FailureConfig(max_failures=1),
            verbose=1,
        )
        trainable_class = config.algo_class
        if options.resume:
            tuner = tune.Tuner.restore(
                experiment_dir,
                trainable=trainable_class,
                param_space=config,
                resume_unfinished=True,
                restart_errored=True,
            )
        else:
            searcher = optuna_searcher(
                db_url=db_url,
                study_name=f"mario-sweeps/{options.name}",
                metric=sweep.metric,
                mode=sweep.mode,
                seed=sweep.seed,
                points_to_evaluate=sweep.points_to_evaluate,
            )
            tuner = tune.Tuner(
                trainable_class,
                param_space=config,
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent),
                    scheduler=asha_scheduler(
                        metric=sweep.metric,
                        mode=sweep.mode,
                        max_env_steps=options.max_env_steps,
                        grace_period=asha.grace_period,
                        reduction_factor=asha.reduction_factor,
                    ),
                    num_samples=options.num_samples,
                    trial_dirname_creator=_trial_dirname,
                ),
                run_config=run_config,
            )
        results = tuner.fit()
        errors = sum(1 for r in results if r.error is not None)
        store.finish_sweep("failed" if errors == len(results) else "finished")
        print(leaderboard(db_url, sweep_id, metric=sweep.metric, mode=sweep.mode))
        return 1 if errors == len(results) and errors else 0
    except KeyboardInterrupt:
        store.finish_sweep("interrupted")
        print(f"interrupted: resume with --resume --name {options.name}", file=sys.stderr)
        return 130
    except BaseException:
        store.finish_sweep("failed")
        raise
    finally:
        store.close()
        import ray

        ray.shutdown()  # each sweep of sweeps/dqn_vs_ppo.py gets its own Ray session


def compare(sweeps: list[Sweep], argv: list[str] | None = None) -> int:
    """Run several sweeps with the same flags, one after the other, then compare them.

    ``--name`` becomes a prefix: sweep ``x-ppo`` runs as ``<name>-ppo``.
    """
    from sweeps.report import comparison

    try:
        runs = []
        for sweep in sweeps:
            options = parse_options(sweep, argv)
            suffix = sweep.name.rsplit("-", 1)[-1]
            if options.name not in (sweep.name, f"{sweep.name}-smoke"):
                options = replace(options, name=f"{options.name}-{suffix}")
            runs.append(options)
        for options in runs:
            code = run(options)
            if code != 0:
                return code
        db_url = runs[0].db_url or embedded_db_url()
        print(comparison(db_url, [o.name for o in runs], metric=sweeps[0].metric))
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
