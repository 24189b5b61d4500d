"""Where a sweep's trials run: the Ray connection and the one Tuner builder.

``algorithm_config`` is the trial (an RLlib AlgorithmConfig with the search space's domains); a
``Stage`` is what one stage runs: the search's (Optuna + ASHA, or a PBT/PB2 population,
:func:`search_stage`) or the confirm stage's (``sweeps.confirm.confirm_stage``). ``build_tuner``
makes the Tuner of either, new or restored, with ``run_config`` and ``build_callbacks``: every
trial of every stage runs under the same stopper, checkpointing and callbacks.
"""

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback, CLIReporter
from ray.tune.search import ConcurrencyLimiter

from callbacks.collapse import SweepStopper
from callbacks.decisions import DecisionMemory
from callbacks.postgres_callback import PostgresCallback
from callbacks.store.tables import json_safe
from callbacks.wandb_logger import MarioWandbLoggerCallback
from sweeps.cli import SweepError
from sweeps.console import quiet_ray_notices, use_progress_table
from sweeps.imitation import imitation_rows
from sweeps.options import Options, algorithm_config
from sweeps.pbt import pbt_scheduler
from sweeps.schedule import Schedule
from sweeps.search import asha_scheduler, optuna_searcher
from sweeps.stats import FINAL_METRIC, final_tail_env_steps

__all__ = [
    "Stage",
    "algorithm_config",
    "build_callbacks",
    "build_tuner",
    "connect_ray",
    "run_config",
    "search_stage",
    "sweep_row",
    "trial_dirname",
]


def connect_ray(options: Options) -> str:
    """Join the cluster (checked reachable first) or start a local Ray; return the dashboard."""
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


@dataclass(frozen=True)
class Stage:
    """What one stage's Tuner runs: the search's (:func:`search_stage`) or the confirm stage's
    (``sweeps.confirm.confirm_stage``); :func:`build_tuner` makes the Tuner of either."""

    schedule: Schedule
    experiment: str
    """Tune's experiment name (its directory under the storage path)."""
    num_samples: int
    scheduler: Any = None
    """Tune's TrialScheduler; None: FIFO."""
    search_alg: Any = None
    max_concurrent_trials: int | None = None
    search_space: dict | None = None
    """The domains the trials draw (None: the sweep's search space)."""
    repeats: dict | None = None
    """Confirm stage: config values -> the search trial whose config a trial repeats."""
    extra_params: tuple[str, ...] = ()
    """Config keys shown in the console table besides the searched ones (the confirm seed)."""


def build_tuner(options: Options, db_url: str, stage: Stage | None = None):
    """The Tuner of ``stage``; without one, the search's: restored with ``--resume``, else new."""
    if stage is None and options.resume:
        # Tune restores the searcher, scheduler, stopper and callbacks it pickled at the start.
        config = algorithm_config(options)
        return tune.Tuner.restore(
            options.experiment_dir,
            trainable=config.algo_class,
            param_space=config,
            resume_unfinished=True,
            restart_errored=True,
        )
    stage = stage or search_stage(options, db_url)
    config = algorithm_config(options, search_space=stage.search_space)
    return tune.Tuner(
        config.algo_class,
        param_space=config,
        tune_config=tune.TuneConfig(
            scheduler=stage.scheduler,
            search_alg=stage.search_alg,
            num_samples=stage.num_samples,
            max_concurrent_trials=stage.max_concurrent_trials,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=run_config(options, stage, callbacks=build_callbacks(options, db_url, stage)),
    )


def search_stage(options: Options, db_url: str) -> Stage:
    """The search: Optuna (its study in PostgreSQL) with ASHA, or a PBT/PB2 population."""
    sweep, schedule = options.sweep, options.schedule
    if schedule.pbt is not None:
        population = pbt_scheduler(
            schedule.kind,
            pbt=schedule.pbt,
            metric=sweep.metric,
            mode=sweep.mode,
            search_space=sweep.search_space,
            lineage_key=options.name,
        )
        return Stage(
            schedule,
            experiment=options.name,
            num_samples=options.num_samples,
            scheduler=population,
            max_concurrent_trials=options.max_concurrent,
        )
    assert schedule.asha is not None  # sweeps.options: a search is ASHA or a population
    asha = asha_scheduler(
        metric=sweep.metric,
        mode=sweep.mode,
        max_env_steps=schedule.max_env_steps,
        grace_period=schedule.asha.grace_period,
        reduction_factor=schedule.asha.reduction_factor,
    )
    searcher = optuna_searcher(
        db_url=db_url,
        study_name=f"mario-sweeps/{options.name}",
        metric=sweep.metric,
        mode=sweep.mode,
        seed=sweep.seed,
        points_to_evaluate=sweep.points_to_evaluate,
    )
    limited = ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent)
    return Stage(
        schedule,
        experiment=options.name,
        num_samples=options.num_samples,
        scheduler=asha,
        search_alg=limited,
    )


def run_config(options: Options, stage: Stage, *, callbacks: list):
    """What every trial of a sweep (search or confirm) runs under: the budget and collapse
    stopper, Tune's checkpoint keeping by the sweep's metric, one retry, our console table; the
    scheduler's and stopper's state saved with the experiment (``DecisionMemory``)."""
    sweep, population = options.sweep, stage.schedule.population
    # Under PBT a collapsing member is recorded, and left for exploit to replace.
    stopper = SweepStopper(
        metric=sweep.metric,
        mode=sweep.mode,
        max_env_steps=options.max_env_steps,
        collapse=sweep.collapse,
        stop_on_collapse=not population,
    )
    return tune.RunConfig(
        name=stage.experiment,
        storage_path=options.storage_path,
        stop=stopper,
        callbacks=[*callbacks, DecisionMemory(scheduler=stage.scheduler, stopper=stopper)],
        checkpoint_config=tune.CheckpointConfig(
            # PBT copies a donor's latest checkpoint: keep enough that it is still there.
            num_to_keep=4 if population else 2,
            checkpoint_score_attribute=options.checkpoint_score,
            checkpoint_score_order="max" if options.eval_every else sweep.mode,
            checkpoint_frequency=sweep.checkpoint_every,
            checkpoint_at_end=True,
        ),
        failure_config=tune.FailureConfig(max_failures=1),
        progress_reporter=progress_reporter(options, extra_params=stage.extra_params),
        verbose=1,
    )


def build_callbacks(options: Options, db_url: str, stage: Stage) -> list:
    """PostgresCallback first (it pops the episode list), then W&B."""
    callbacks: list[Callback] = [
        PostgresCallback(
            db_url=db_url,
            sweep=sweep_row(options),
            param_keys=list(options.sweep.search_space),
            num_samples=stage.num_samples,
            scheduler=stage.schedule.stop_reason,
            stage=stage.schedule.stage,
            repeats=stage.repeats,
            final_tail_env_steps=final_tail_env_steps(options.max_env_steps),
            lineage=stage.schedule.population,
            imitation=imitation_rows(options),
        )
    ]
    if options.wandb_mode != "disabled":
        callbacks.append(
            MarioWandbLoggerCallback(
                project=options.wandb_project, group=options.name, mode=options.wandb_mode
            )
        )
    return callbacks


def sweep_row(options: Options) -> dict[str, Any]:
    """The ``sweeps`` row a new sweep writes: what it searches, how, and everything a confirm
    stage or a report needs later (``settings``)."""
    sweep = options.sweep
    return {
        "name": options.name,
        "algo": sweep.algo,
        "search_space": json_safe(sweep.search_space),
        "metric": sweep.metric,
        "mode": sweep.mode,
        "scheduler": {**options.schedule.record(), "collapse": vars(sweep.collapse)},
        "command": options.command,
        "code_version": _code_version(),
        "ray_address": options.address or "local",
        "settings": json_safe(
            {
                "env_config": options.env_config,
                "hparams": options.hparams,
                "max_env_steps": options.max_env_steps,
                "checkpoint_every": sweep.checkpoint_every,
                "eval_every": options.eval_every,
                "eval_episodes": options.eval_episodes,
                "collapse": vars(sweep.collapse),
                "storage_path": options.storage_path,
                "smoke": options.smoke,
                "confirm": {"top": options.confirm_top, "seeds": options.confirm_seeds},
                "demos": options.demos,
                "bc_hparams": options.bc_hparams,
                "final_metric": {
                    "definition": FINAL_METRIC,
                    "tail_env_steps": final_tail_env_steps(options.max_env_steps),
                },
            }
        ),
    }


def progress_reporter(options: Options, *, extra_params: tuple[str, ...] = ()):
    """The console table: our metric, this iteration's furthest x_pos and flags (labelled
    ``/iter``), the trial's episodes and env steps so far, searched params (and
    ``extra_params``: the confirm stage's seed), and with ``--eval-every`` the last evaluation's
    flag rate."""
    evaluated = {"eval/flag_rate": "eval flags"} if options.eval_every else {}
    return CLIReporter(
        metric_columns={
            options.sweep.metric: "metric",
            "mario/x_pos_max": "x_pos max/iter",
            "mario/flags": "flags/iter",
            "env_runners/num_episodes_lifetime": "episodes",
            "num_env_steps_sampled_lifetime": "env steps",
        }
        | evaluated,
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
