"""The confirm stage: the sweep's best configs re-run over fresh seeds, then ranked by IQM.

A TPE + ASHA search ranks each config by one seed, so the top of its ranking is partly luck. The
confirm stage takes the top K distinct configs by the sweep's metric (search trials only), and
re-runs each with N fresh seeds (:func:`confirm_seeds`) at the sweep's full budget: the same env,
hyperparameters, stopper (collapse detection on; its stops count as results) and callbacks, but
no ASHA and no Optuna. Each confirm trial is a trial row of the same sweep with ``stage =
'confirm'``, its ``seed``, and ``repeats`` naming the search trial whose config it runs, so every
iteration and episode of it is stored like any other. After the runs, each confirm trial's
kept best checkpoint is evaluated (``--eval-episodes``), and the configs are ranked by the IQM of
their seeds' final metric (:data:`sweeps.stats.FINAL_METRIC`) with 95 % bootstrap intervals.

Every sweep ends with this stage (``--confirm-top K --confirm-seeds N``; K = 0 turns it off), and
it can be started on an existing sweep::

    python -m sweeps.confirm NAME --top 3 --seeds 5

Running it again never re-runs a (config, seed) that already finished: it plans from the store
and runs only what is missing (a pair cut off by Ctrl-C starts again from scratch).
"""

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.rllib.utils import unflatten_dict
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.sample import Domain

from callbacks.collapse import Collapse
from callbacks.records import CONFIRM_STAGE
from callbacks.store import StoreError, embedded_db_url
from envs import register_mario_env
from sweeps.cli import PASSWORD_ADVICE, OneLineParser, SweepError
from sweeps.evaluation import evaluate_trials
from sweeps.leaderboard import confirmed_table
from sweeps.options import (
    Options,
    add_connection_flags,
    add_eval_flags,
    algorithm_config,
    check_eval_metric,
    confirm_counts_problem,
    connections,
    eval_episodes,
    eval_every,
    warn_about_password,
)
from sweeps.queries import ReportError, confirm_inputs, confirm_runs, sweep_row
from sweeps.schedule import Schedule
from sweeps.spec import Asha, Imitation, Sweep
from sweeps.stats import ConfirmedConfig, summarise_confirmed
from sweeps.tuner import Stage, build_tuner, connect_ray

__all__ = [
    "CONFIRM_SEED_BASE",
    "ConfirmError",
    "Plan",
    "confirm_seeds",
    "confirm_stage",
    "confirmed_configs",
    "main",
    "plan_confirm",
    "run_confirm",
]

CONFIRM_SEED_BASE = 1_000
"""Confirm seeds are 1000, 1001, ...: never a search trial's seed (those are 0..999 or unset)."""


class ConfirmError(ValueError):
    """A confirm request that cannot be run (reported in one line, exit code 2)."""


def confirm_seeds(n: int) -> list[int]:
    return [CONFIRM_SEED_BASE + i for i in range(n)]


# -- what to run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A search trial whose config is confirmed."""

    trial_id: str
    params: dict[str, Any]
    best_metric: float


@dataclass(frozen=True)
class Plan:
    sweep: dict[str, Any]
    """The sweep row: id, name, algo, metric, mode, search_space, settings, status."""
    candidates: list[Candidate]
    seeds: list[int]
    missing: list[tuple[Candidate, int]]
    """(config, seed) pairs with no finished confirm trial yet, in rank then seed order."""


def plan_confirm(db_url: str, name: str, *, top: int, seeds: int) -> Plan:
    """Which (config, seed) pairs the confirm stage of sweep ``name`` still has to run."""
    problem = confirm_counts_problem(top, seeds, top_flag="--top", seeds_flag="--seeds")
    if problem is not None:
        raise ConfirmError(problem)
    sweep, ranked, finished = confirm_inputs(db_url, name)
    if not sweep["settings"]:
        raise ConfirmError(
            f"sweep {name!r} was recorded without its settings (before schema v4); allowed: a "
            "sweep started by this version"
        )
    if "seed" in (sweep["search_space"] or {}):
        raise ConfirmError(
            f"sweep {name!r} searches 'seed' itself; allowed: confirm a sweep whose search "
            "space has no seed (compare its trials with python -m sweeps.compare instead)"
        )
    candidates: list[Candidate] = []
    seen: set[str] = set()
    for row in ranked:
        key = json.dumps(row["params"], sort_keys=True)
        if key not in seen and len(candidates) < top:
            seen.add(key)
            candidates.append(Candidate(row["trial_id"], row["params"] or {}, row["best_metric"]))
    if top and not candidates:
        raise ConfirmError(f"sweep {name!r} has no trial with a metric to confirm")
    wanted = confirm_seeds(seeds)
    missing = [(c, s) for c in candidates for s in wanted if (c.trial_id, s) not in finished]
    return Plan(sweep=sweep, candidates=candidates, seeds=wanted, missing=missing)


# -- running it ----------------------------------------------------------------------------------


def options_from_sweep(sweep: Mapping[str, Any], **overrides: Any) -> Options:
    """Options for trials built like stored sweep ``sweep``'s (its settings), schedule FIFO."""
    settings = sweep["settings"]
    budget = settings["max_env_steps"]
    declared = Sweep(
        name=sweep["name"],
        algo=sweep["algo"],
        search_space=dict(sweep["search_space"] or {}),
        max_env_steps=budget,
        num_samples=1,
        asha=Asha(grace_period=budget),
        metric=sweep["metric"],
        mode=sweep["mode"],
        hparams=settings["hparams"],
        env_config=settings["env_config"],
        collapse=Collapse(**settings["collapse"]),
        checkpoint_every=settings["checkpoint_every"],
        imitation=Imitation(settings.get("bc_hparams") or {}) if settings.get("demos") else None,
    )
    stored = {
        "sweep": declared,
        "name": sweep["name"],
        "num_samples": 1,
        "max_env_steps": budget,
        "max_concurrent": 2,
        "storage_path": settings["storage_path"],
        "env_config": settings["env_config"],
        "hparams": settings["hparams"],
        "schedule": Schedule("fifo", budget, stage=CONFIRM_STAGE),
        "smoke": settings.get("smoke", False),
        "eval_every": settings.get("eval_every", 0),
        "eval_episodes": settings.get("eval_episodes", 5),
        "demos": settings.get("demos"),
        "bc_hparams": settings.get("bc_hparams") or {},
    }
    return Options(**(stored | overrides))


def _experiment_name(options) -> str:
    """A new experiment directory per confirm run: ``<name>-confirm``, ``<name>-confirm-2``..."""
    if "://" in options.storage_path:
        return f"{options.name}-confirm-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    base, k = f"{options.name}-confirm", 1
    while (Path(options.storage_path) / (base if k == 1 else f"{base}-{k}")).exists():
        k += 1
    return base if k == 1 else f"{base}-{k}"


def _config_paths(options, keys: list[str]) -> dict[str, tuple[str, ...]]:
    """Where each hyperparameter lands in the AlgorithmConfig dict (``replay_capacity`` is
    ``replay_buffer_config.capacity``): found by building the config with just it searched."""

    def find(node: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
        if isinstance(node, Domain):
            return path
        if isinstance(node, Mapping):
            for key, value in node.items():
                found = find(value, (*path, key))
                if found is not None:
                    return found
        return None

    paths = {}
    for key in keys:
        probe = options.hparams.get(key, 1)
        config = algorithm_config(options, search_space={key: tune.choice([probe])})
        found = find(config.to_dict(), ())
        assert found is not None, key  # a searched key is a Domain somewhere in the config
        paths[key] = found
    return paths


def confirm_stage(options: Options, plan: Plan) -> Stage:
    """Exactly ``plan.missing``: one trial per (config, seed), FIFO, no ASHA, no Optuna."""
    keys = list(options.sweep.search_space)
    domains = {
        key: tune.choice(sorted({c.params[key] for c, _ in plan.missing}, key=repr)) for key in keys
    }
    domains["seed"] = tune.choice(sorted({seed for _, seed in plan.missing}))
    paths = {key: "/".join(path) for key, path in _config_paths(options, [*keys, "seed"]).items()}
    points = [
        unflatten_dict({paths[k]: c.params[k] for k in keys} | {paths["seed"]: seed})
        for c, seed in plan.missing
    ]
    return Stage(
        options.schedule.confirm(),
        experiment=_experiment_name(options),
        num_samples=len(points),
        search_alg=BasicVariantGenerator(
            points_to_evaluate=points, max_concurrent=options.max_concurrent
        ),
        search_space=domains,
        repeats={tuple(c.params[k] for k in keys): c.trial_id for c in plan.candidates},
        extra_params=("seed",),
    )


def run_confirm(options: Options, db_url: str, *, top: int, seeds: int) -> bool:
    """Run what the confirm stage of ``options.name`` still misses (Ray must be connected), then
    evaluate the confirm trials; return False if it was interrupted."""
    plan = plan_confirm(db_url, options.name, top=top, seeds=seeds)
    if not plan.candidates or not plan.seeds:
        return True
    print(
        f"confirm     top {len(plan.candidates)} configs x {len(plan.seeds)} seeds "
        f"({len(plan.missing)} trials to run, ASHA off, collapse detection on)"
    )
    if plan.missing:
        build_tuner(options, db_url, confirm_stage(options, plan)).fit()
        if sweep_row(db_url, options.name)["status"] == "interrupted":
            return False
    if options.eval_episodes:
        for evaluation in evaluate_trials(db_url, options.name, episodes=options.eval_episodes):
            print(evaluation.summary())
    return True


def confirmed_configs(db_url: str, name: str) -> list[ConfirmedConfig]:
    """The sweep's confirmed configs, best IQM of the final metric first."""
    sweep, runs = confirm_runs(db_url, name)
    return summarise_confirmed(runs, mode=sweep["mode"])


# -- CLI -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m sweeps.confirm NAME --top K --seeds N``: confirm an existing sweep."""
    parser = OneLineParser(
        prog="python -m sweeps.confirm",
        description="Re-run a sweep's top K configs with N fresh seeds each (full budget, no "
        "ASHA), evaluate them, and rank them by IQM with 95 % bootstrap intervals.",
        epilog=f"Database passwords: {PASSWORD_ADVICE}.",
    )
    parser.add_argument("name", help="the sweep's --name")
    parser.add_argument("--top", type=int, default=3, help="configs to confirm (default 3)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per config (default 5)")
    add_connection_flags(parser, max_concurrent=2)
    add_eval_flags(parser, default="5")
    try:
        args = parser.parse_args(argv)
        where = connections(args, max_concurrent=2)
        db_url = where.pop("db_url") or embedded_db_url()
        plan = plan_confirm(db_url, args.name, top=args.top, seeds=args.seeds)
        episodes = eval_episodes(args.eval_episodes, smoke=False)
        settings = plan.sweep["settings"]
        every = settings.get("eval_every", 0) if args.eval_every is None else args.eval_every
        options = options_from_sweep(
            plan.sweep,
            **where,
            db_url=db_url,
            eval_episodes=episodes,
            eval_sample=args.eval_sample,
            eval_every=eval_every(
                every, smoke=False, max_env_steps=settings["max_env_steps"], episodes=episodes
            ),
        )
        check_eval_metric(options)
        warn_about_password(db_url)
        done = _confirm(options, db_url, plan, top=args.top, seeds=args.seeds)
    except (ConfirmError, SweepError, StoreError, ReportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(confirmed_table(confirmed_configs(db_url, args.name), metric=plan.sweep["metric"]))
    if not done:
        print(f"interrupted: run the same command again to continue {args.name!r}", file=sys.stderr)
        return 130
    return 0


def _confirm(options: Options, db_url: str, plan: Plan, *, top: int, seeds: int) -> bool:
    """Run the plan's missing pairs on Ray (started here), or say there are none."""
    if not plan.missing:
        none = f"--top {top} --seeds {seeds} ask for none"
        print(
            f"confirm     nothing to run: every (config, seed) of {options.name!r} finished"
            if top and seeds
            else f"confirm     nothing to run: {none}"
        )
        return run_confirm(options, db_url, top=top, seeds=seeds)
    register_mario_env()
    connect_ray(options)
    try:
        return run_confirm(options, db_url, top=top, seeds=seeds)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
