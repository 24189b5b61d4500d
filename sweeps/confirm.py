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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from callbacks.collapse import Collapse
from callbacks.store import StoreError, embedded_db_url, resolve_db_url
from sweeps.evaluation import evaluate_trials
from sweeps.options import (
    ADDRESS,
    OneLineParser,
    Options,
    SweepError,
    algorithm_config,
    confirm_counts_problem,
    warn_about_password,
)
from sweeps.queries import fetch_dicts
from sweeps.spec import Asha, Sweep
from sweeps.stats import Interval, StatsError, iqm_interval, probability_of_improvement
from sweeps.tuner import build_callbacks, connect_ray, run_config, trial_dirname

__all__ = [
    "CONFIRM_SEED_BASE",
    "ConfirmError",
    "ConfirmedConfig",
    "Plan",
    "confirm_seeds",
    "confirmed_configs",
    "confirmed_table",
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


_SWEEP_SQL = """
SELECT id, name, algo, metric, mode, search_space, settings, status
FROM mario_sweeps.sweeps WHERE name = %s
"""
_CANDIDATES_SQL = """
SELECT trial_id, params, best_metric FROM mario_sweeps.trials
WHERE sweep_id = %s AND stage = 'search' AND best_metric IS NOT NULL
ORDER BY best_metric {order}, trial_id
"""
_FINISHED_SQL = """
SELECT repeats, seed FROM mario_sweeps.trials
WHERE sweep_id = %s AND stage = 'confirm' AND status = 'terminated'
"""


def read_sweep_row(db_url: str, name: str) -> dict[str, Any]:
    """The sweep row named ``name``, or a one-line ConfirmError."""
    try:
        rows = fetch_dicts(db_url, _SWEEP_SQL, (name,))
    except Exception as exc:  # psycopg2 errors: no schema, unreachable server
        raise ConfirmError(f"cannot read sweep {name!r}: {str(exc).splitlines()[0]}") from None
    if not rows:
        raise ConfirmError(f"no sweep named {name!r} in the results database")
    return rows[0]


def plan_confirm(db_url: str, name: str, *, top: int, seeds: int) -> Plan:
    """Which (config, seed) pairs the confirm stage of sweep ``name`` still has to run."""
    problem = confirm_counts_problem(top, seeds, top_flag="--top", seeds_flag="--seeds")
    if problem is not None:
        raise ConfirmError(problem)
    sweep = read_sweep_row(db_url, name)
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
    order = "DESC" if sweep["mode"] == "max" else "ASC"
    candidates: list[Candidate] = []
    seen: set[str] = set()
    for row in fetch_dicts(db_url, _CANDIDATES_SQL.format(order=order), (sweep["id"],)):
        key = json.dumps(row["params"], sort_keys=True)
        if key not in seen and len(candidates) < top:
            seen.add(key)
            candidates.append(Candidate(row["trial_id"], row["params"] or {}, row["best_metric"]))
    if top and not candidates:
        raise ConfirmError(f"sweep {name!r} has no trial with a metric to confirm")
    finished = {
        (r["repeats"], r["seed"]) for r in fetch_dicts(db_url, _FINISHED_SQL, (sweep["id"],))
    }
    wanted = confirm_seeds(seeds)
    missing = [(c, s) for c in candidates for s in wanted if (c.trial_id, s) not in finished]
    return Plan(sweep=sweep, candidates=candidates, seeds=wanted, missing=missing)


# -- running it ----------------------------------------------------------------------------------


def options_from_sweep(sweep: Mapping[str, Any], **overrides: Any):
    """The runner's Options for trials built like sweep ``sweep``'s (from its stored settings)."""
    settings = sweep["settings"]
    declared = Sweep(
        name=sweep["name"],
        algo=sweep["algo"],
        search_space=dict(sweep["search_space"] or {}),
        max_env_steps=settings["max_env_steps"],
        num_samples=1,
        asha=Asha(grace_period=settings["max_env_steps"]),
        metric=sweep["metric"],
        mode=sweep["mode"],
        hparams=settings["hparams"],
        env_config=settings["env_config"],
        collapse=Collapse(**settings["collapse"]),
        checkpoint_every=settings["checkpoint_every"],
    )
    fields = {
        "sweep": declared,
        "name": sweep["name"],
        "num_samples": 1,
        "max_env_steps": settings["max_env_steps"],
        "max_concurrent": 2,
        "address": None,
        "db_url": None,
        "wandb_project": "mario-sweeps",
        "wandb_mode": "offline",
        "resume": False,
        "smoke": settings.get("smoke", False),
        "storage_path": settings["storage_path"],
        "gpus_per_learner": 0.0,
        "env_config": settings["env_config"],
        "hparams": settings["hparams"],
        "command": "",
        "eval_episodes": 5,
        "eval_sample": False,
        "report_every_s": 0.0,
        "confirm_top": 0,
        "confirm_seeds": 0,
    }
    fields.update(overrides)
    return Options(**fields)


def _experiment_name(options) -> str:
    """A new experiment directory per confirm run: ``<name>-confirm``, ``<name>-confirm-2``..."""
    if "://" in options.storage_path:
        from datetime import UTC, datetime

        return f"{options.name}-confirm-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    base, k = f"{options.name}-confirm", 1
    while (Path(options.storage_path) / (base if k == 1 else f"{base}-{k}")).exists():
        k += 1
    return base if k == 1 else f"{base}-{k}"


def _config_paths(options, keys: list[str]) -> dict[str, tuple[str, ...]]:
    """Where each hyperparameter lands in the AlgorithmConfig dict (``replay_capacity`` is
    ``replay_buffer_config.capacity``): found by building the config with just it searched."""
    from ray import tune
    from ray.tune.search.sample import Domain

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


def _nested(values: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    point: dict[str, Any] = {}
    for path, value in values.items():
        node = point
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return point


def build_confirm_tuner(options, db_url: str, plan: Plan):
    """A Tuner that runs exactly ``plan.missing``: one trial per (config, seed), FIFO, no ASHA."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    keys = list(options.sweep.search_space)
    domains = {
        key: tune.choice(sorted({c.params[key] for c, _ in plan.missing}, key=repr)) for key in keys
    }
    domains["seed"] = tune.choice(sorted({seed for _, seed in plan.missing}))
    config = algorithm_config(options, search_space=domains)
    paths = _config_paths(options, [*keys, "seed"])
    points = [
        _nested({paths[k]: c.params[k] for k in keys} | {paths["seed"]: seed})
        for c, seed in plan.missing
    ]
    repeats = {tuple(c.params[k] for k in keys): c.trial_id for c in plan.candidates}
    return tune.Tuner(
        config.algo_class,
        param_space=config,
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(
                points_to_evaluate=points, max_concurrent=options.max_concurrent
            ),
            num_samples=len(points),
            trial_dirname_creator=trial_dirname,
        ),
        run_config=run_config(
            options,
            name=_experiment_name(options),
            callbacks=build_callbacks(
                options,
                db_url,
                scheduler={"type": "FIFO", "stage": "confirm"},
                stage="confirm",
                repeats=repeats,
                num_samples=len(points),
            ),
            extra_params=("seed",),
        ),
    )


def run_confirm(options, db_url: str, *, top: int, seeds: int) -> bool:
    """Run what the confirm stage of ``options.name`` still misses (Ray must be connected), then
    evaluate the confirm trials; return False if it was interrupted."""
    from callbacks.store import find_sweep

    plan = plan_confirm(db_url, options.name, top=top, seeds=seeds)
    if not plan.candidates or not plan.seeds:
        return True
    print(
        f"confirm     top {len(plan.candidates)} configs x {len(plan.seeds)} seeds "
        f"({len(plan.missing)} trials to run, ASHA off, collapse detection on)"
    )
    if plan.missing:
        tuner = build_confirm_tuner(options, db_url, plan)
        tuner.fit()
        row = find_sweep(db_url, options.name)
        if row is not None and row["status"] == "interrupted":
            return False
    if options.eval_episodes:
        for evaluation in evaluate_trials(db_url, options.name, episodes=options.eval_episodes):
            print(evaluation.summary())
    return True


# -- the statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmedConfig:
    """One confirmed config: its seeds' final metrics and evaluation flag rates, summarised."""

    repeats: str
    params: dict[str, Any]
    trial_ids: list[str]
    seeds: list[int]
    scores: list[float]
    flag_rates: list[float]
    final: Interval | None
    """IQM of the final metric over seeds with its 95 % interval (None below 2 seeds)."""
    flag_rate: Interval | None
    probability_of_improvement: float | None
    """P(a run of the first-ranked config beats a run of this one); None for the first."""

    @property
    def n(self) -> int:
        return len(self.scores)


_CONFIRMED_SQL = """
SELECT t.repeats, s.params, t.trial_id, t.seed, t.final_metric, v.flag_rate
FROM mario_sweeps.trials t
JOIN mario_sweeps.trials s ON s.sweep_id = t.sweep_id AND s.trial_id = t.repeats
LEFT JOIN (
    SELECT sweep_id, trial_id, avg(flag_get::int)::double precision AS flag_rate
    FROM mario_sweeps.evaluations WHERE policy = 'greedy' GROUP BY sweep_id, trial_id
) v ON v.sweep_id = t.sweep_id AND v.trial_id = t.trial_id
WHERE t.sweep_id = (SELECT id FROM mario_sweeps.sweeps WHERE name = %s)
  AND t.stage = 'confirm' AND t.status = 'terminated' AND t.final_metric IS NOT NULL
ORDER BY t.repeats, t.seed
"""


def _interval(values: list[float], seed: int) -> Interval | None:
    try:
        return iqm_interval(values, seed=seed)
    except StatsError:
        return None


def confirmed_configs(db_url: str, name: str, *, mode: str = "max") -> list[ConfirmedConfig]:
    """The sweep's confirmed configs, best IQM of the final metric first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in fetch_dicts(db_url, _CONFIRMED_SQL, (name,)):
        groups.setdefault(row["repeats"], []).append(row)
    sign = 1 if mode == "max" else -1
    summaries = []
    for repeats, rows in groups.items():
        scores = [r["final_metric"] for r in rows]
        flags = [r["flag_rate"] for r in rows if r["flag_rate"] is not None]
        summaries.append(
            ConfirmedConfig(
                repeats=repeats,
                params=rows[0]["params"] or {},
                trial_ids=[r["trial_id"] for r in rows],
                seeds=[r["seed"] for r in rows],
                scores=scores,
                flag_rates=flags,
                final=_interval(scores, seed=0),
                flag_rate=_interval(flags, seed=1) if len(flags) == len(rows) else None,
                probability_of_improvement=None,
            )
        )

    def rank(c: ConfirmedConfig) -> tuple:
        value = c.final.value if c.final else sum(c.scores) / len(c.scores)
        return (-sign * value, c.repeats)

    summaries.sort(key=rank)
    if not summaries:
        return []
    first = summaries[0]
    return [first] + [
        replace(
            c,
            probability_of_improvement=probability_of_improvement(
                [sign * s for s in first.scores], [sign * s for s in c.scores]
            ),
        )
        for c in summaries[1:]
    ]


def _params_text(params: Mapping[str, Any], width: int = 40) -> str:
    text = json.dumps(
        {k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in params.items()},
        separators=(",", ":"),
    )
    return text[:width]


def interval_text(interval: Interval | None, *, percent: bool = False) -> str:
    if interval is None:
        return "-"
    if percent:
        return f"{interval.value:.0%} [{interval.low:.0%}, {interval.high:.0%}]"
    return str(interval)


def confirmed_table(db_url: str, name: str, *, metric: str, mode: str) -> str:
    """The console table of confirmed configs (empty string when there are none)."""
    configs = confirmed_configs(db_url, name, mode=mode)
    if not configs:
        return ""
    lines = [
        "",
        f"confirmed configs (IQM over seeds [95 % bootstrap CI]; final {metric} = mean over "
        "the last 10 % of the budget)",
        f"{'rank':<4} {'config of':<10} {'params':<40} {'N':>3} {'final metric IQM':>30} "
        f"{'eval flag rate IQM':>22} {'P(#1 > this)':>12}",
    ]
    for rank, c in enumerate(configs, 1):
        final = interval_text(c.final) if c.final else f"{c.scores[0]:,.1f} (1 seed)"
        poi = "-" if c.probability_of_improvement is None else f"{c.probability_of_improvement:.2f}"
        lines.append(
            f"{rank:<4} {c.repeats:<10} {_params_text(c.params):<40} {c.n:>3} {final:>30} "
            f"{interval_text(c.flag_rate, percent=True):>22} {poi:>12}"
        )
    return "\n".join(lines)


# -- CLI -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m sweeps.confirm NAME --top K --seeds N``: confirm an existing sweep."""
    parser = OneLineParser(
        prog="python -m sweeps.confirm",
        description="Re-run a sweep's top K configs with N fresh seeds each (full budget, no "
        "ASHA), evaluate them, and rank them by IQM with 95 % bootstrap intervals.",
    )
    parser.add_argument("name", help="the sweep's --name")
    parser.add_argument("--top", type=int, default=3, help="configs to confirm (default 3)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per config (default 5)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at once")
    parser.add_argument("--eval-episodes", type=int, default=5, help="evaluation episodes")
    parser.add_argument("--address", help="Ray cluster to join (default: local Ray)")
    parser.add_argument("--db-url", help="PostgreSQL URL (default: the embedded one)")
    parser.add_argument(
        "--wandb-mode", default="offline", choices=("offline", "online", "disabled")
    )
    parser.add_argument("--wandb-project", default="mario-sweeps")
    try:
        args = parser.parse_args(argv)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    db_url = resolve_db_url(args.db_url) or embedded_db_url()
    try:
        if not 1 <= args.max_concurrent <= 10_000:
            raise ConfirmError(
                f"--max-concurrent {args.max_concurrent} is not allowed; allowed: 1..10,000"
            )
        if args.address is not None and not ADDRESS.fullmatch(args.address):
            raise ConfirmError(
                f"--address {args.address!r} is not allowed; allowed: HOST:PORT, "
                "ray://HOST:PORT, or auto"
            )
        if not 0 <= args.eval_episodes <= 1_000:
            raise ConfirmError(
                f"--eval-episodes {args.eval_episodes} is not allowed; allowed: 0..1,000"
            )
        plan = plan_confirm(db_url, args.name, top=args.top, seeds=args.seeds)
        options = options_from_sweep(
            plan.sweep,
            max_concurrent=args.max_concurrent,
            eval_episodes=args.eval_episodes,
            address=args.address,
            db_url=db_url,
            wandb_mode=args.wandb_mode,
            wandb_project=args.wandb_project,
        )
        warn_about_password(db_url)
        if plan.missing:
            import ray

            from envs import register_mario_env

            register_mario_env()
            connect_ray(options)
            try:
                done = run_confirm(options, db_url, top=args.top, seeds=args.seeds)
            finally:
                ray.shutdown()
        else:
            none = f"--top {args.top} --seeds {args.seeds} ask for none"
            print(
                f"confirm     nothing to run: every (config, seed) of {args.name!r} finished"
                if args.top and args.seeds
                else f"confirm     nothing to run: {none}"
            )
            done = run_confirm(options, db_url, top=args.top, seeds=args.seeds)
    except (ConfirmError, SweepError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(confirmed_table(db_url, args.name, metric=plan.sweep["metric"], mode=plan.sweep["mode"]))
    if not done:
        print(f"interrupted: run the same command again to continue {args.name!r}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
