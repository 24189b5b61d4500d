"""Where a sweep's trials run: the Ray connection and the one Tuner builder.

``algorithm_config`` is the trial (an RLlib AlgorithmConfig with the search space's domains);
``build_tuner`` adds the searcher and scheduler (Optuna + ASHA, or a PBT/PB2 population) for a
new or restored sweep; ``run_config`` and ``build_callbacks`` are what every trial runs under,
the search's and the confirm stage's alike (``sweeps.confirm`` builds its Tuner from them).
"""

import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callbacks.collapse import SweepStopper
from callbacks.decisions import DecisionMemory
from callbacks.postgres_callback import PostgresCallback
from callbacks.store.tables import json_safe
from callbacks.wandb_logger import MarioWandbLoggerCallback
from sweeps.console import quiet_ray_notices, use_progress_table
from sweeps.options import Options, SweepError, algorithm_config
from sweeps.pbt import pbt_scheduler
from sweeps.search import asha_scheduler, optuna_searcher
from sweeps.stats import FINAL_METRIC, final_tail_env_steps

if TYPE_CHECKING:
    from ray.tune import Callback

__all__ = [
    "algorithm_config",
    "build_callbacks",
    "build_tuner",
    "connect_ray",
    "run_config",
    "trial_dirname",
]


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


def build_tuner(options: Options, db_url: str):
    """The Tuner for a new or restored sweep: searcher, scheduler, stopper and callbacks."""
    from ray import tune

    config = algorithm_config(options)
    if options.resume:
        # Tune restores the searcher, scheduler, stopper and callbacks it pickled at the start.
        return tune.Tuner.restore(
            options.experiment_dir,
            trainable=config.algo_class,
            param_space=config,
            resume_unfinished=True,
            restart_errored=True,
        )
    population = options.scheduler in ("pbt", "pb2")
    scheduler, recorded, search = (_population if population else _search)(options, db_url)
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


def _population(options: Options, db_url: str) -> tuple[Any, dict, dict[str, Any]]:
    """PBT or PB2 over the search space: (scheduler, its stored settings, TuneConfig kwargs)."""
    sweep = options.sweep
    assert options.pbt is not None  # sweeps.options sets it for pbt / pb2
    scheduler = pbt_scheduler(
        options.scheduler,
        pbt=options.pbt,
        metric=sweep.metric,
        mode=sweep.mode,
        search_space=sweep.search_space,
        lineage_key=options.name,
    )
    recorded = {"type": options.scheduler.upper(), **vars(options.pbt)}
    return scheduler, recorded, {"max_concurrent_trials": options.max_concurrent}


def _search(options: Options, db_url: str) -> tuple[Any, dict, dict[str, Any]]:
    """Optuna (its study in PostgreSQL) and ASHA: (scheduler, its settings, TuneConfig kwargs)."""
    from ray.tune.search import ConcurrencyLimiter

    sweep = options.sweep
    declared = sweep.smoke.asha if options.smoke else sweep.asha
    assert declared is not None  # sweeps.options allows asha only for a sweep with ASHA
    asha = declared.within(options.max_env_steps)
    scheduler = asha_scheduler(
        metric=sweep.metric,
        mode=sweep.mode,
        max_env_steps=options.max_env_steps,
        grace_period=asha.grace_period,
        reduction_factor=asha.reduction_factor,
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
    return scheduler, {"type": "ASHA", **vars(asha)}, {"search_alg": limited}


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
    sweep = options.sweep
    tail = final_tail_env_steps(options.max_env_steps)
    callbacks: list[Callback] = [
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
    """The console table: our metric, this iteration's furthest x_pos and flags (labelled
    ``/iter``), the trial's episodes and env steps so far, searched params (and
    ``extra_params``: the confirm stage's seed)."""
    from ray.tune import CLIReporter

    return CLIReporter(
        metric_columns={
            options.sweep.metric: "metric",
            "mario/x_pos_max": "x_pos max/iter",
            "mario/flags": "flags/iter",
            "env_runners/num_episodes_lifetime": "episodes",
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
