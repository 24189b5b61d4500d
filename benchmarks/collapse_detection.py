"""Is the collapse detector right? False positives on real healthy curves, delay on spliced ones.

    python benchmarks/collapse_detection.py [CURVES ...] [--json]

CURVES are trials' iteration logs (JSON lines from ``benchmarks/learning.py --out``; default: the
real 500k-step runs kept in ``benchmarks/data/``). Each line is one iteration with every episode
that ended in it, so every rule below sees exactly the episode stream a sweep's trial saw.

- **Healthy**: each real curve as it is. Any collapse verdict on it is a false positive.
- **Spliced**: the same curve with a collapse put in at a known env step: from there on, each
  iteration's episodes are replaced by as many drawn (seeded) from real episodes of a collapsed
  agent (``benchmarks/data/collapse-levels.json``, played in the real emulator by
  ``--make-levels N``). ``collapsed`` is a policy whose entropy collapsed onto "right" (it presses
  right 80 % of the time, else a uniform action): it runs into the first Goomba, x_pos ~300-450,
  the level the issue's collapsed PPO fell to. ``uniform`` (uniform random actions) is kept for
  reference: on 1-1 it reaches x_pos ~780, about where PPO plateaus, so falling to it is not a
  collapse anyone could see in x_pos. The delay is the env steps from the splice to the verdict; a
  miss is no verdict within ``TARGET_DELAY``.

The rules are fed through the code a sweep runs: ``EpisodeRecorder`` computes the metrics from
episode records, and ``CollapseDetector`` decides, with the rule's ``Collapse`` settings.

The ASHA half: how noisy is each metric against the differences ASHA decides on? At the rungs of
the sweep files' ASHA (grace 50k env steps, reduction factor 3: 50k, 150k, 450k), for every pair of
curves long enough, the rung decision (which of the two is ahead on the metric) is compared with
their ranking by mean episode x_pos just before the next rung (125k-150k, 425k-450k), and each
metric's iteration-to-iteration swing is set against the gap between the trials at the rung.
"""

import argparse
import itertools
import json
import math
import statistics
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callbacks.collapse import Collapse, CollapseDetector
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.records import EPISODES_KEY, metric_key

DATA = Path(__file__).resolve().parent / "data"
LEVELS = DATA / "collapse-levels.json"
"""Episodes of a collapsed and of a uniform random agent (see the module docstring)."""
SPLICE_EVERY = 50_000
"""A collapse is spliced in at every multiple of this from the end of the grace period on, each
in its own copy of the curve, as long as ``TARGET_DELAY`` env steps follow it."""
WATCH_FROM_EVERY = 100_000
"""A healthy curve is also watched from each multiple of this on (the detector started afresh
there, as for a trial restored at that step): more chances for a false positive on real data."""
TARGET_DELAY = 50_000
VISIBLE_FALL = 1.5
"""A collapse is spliced in only where the trial stood at least this many times the collapse
level's mean x_pos (its last-100 mean just before): a trial already near that level (a DQN that
has not learned yet) cannot fall to it, and no rule could see it."""
RUNGS = ((50_000, (125_000, 150_000)), (150_000, (425_000, 450_000)))
"""(rung, the env-step window before the next rung whose mean x_pos ranks the pair later)."""


@dataclass(frozen=True)
class Rule:
    """A collapse rule: which metric it watches and the ``Collapse`` settings it decides with."""

    name: str
    metric: str
    collapse: Collapse


RULES = [
    Rule(
        "wave 1: EMA x_pos, 40 % below peak for 8 iterations",
        "x_pos_smoothed",
        Collapse(drop_fraction=0.4, window=8, grace_env_steps=100_000),
    ),
    *[
        Rule(
            f"mean x_pos of last {n} episodes, {drop:.0%} below its best for {window} iterations",
            f"x_pos_last{n}",
            Collapse(drop_fraction=drop, window=window, grace_env_steps=100_000),
        )
        for n, drop, window in itertools.product((50, 100, 200), (0.25, 0.4), (1, 4, 8))
    ],
]


def load(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def metrics(iterations: list[dict], windows: tuple[int, ...] = (50, 100, 200)) -> list[dict]:
    """Per iteration: env steps and every metric a rule may watch, through ``EpisodeRecorder``."""
    recorder = EpisodeRecorder(recent_episodes=windows)
    out = []
    for it in iterations:
        records = [
            {"episode_return": 0.0, "x_pos_max": x, "flag_get": how == "flag"}
            for x, how, _ in it["episodes"]
        ]
        result = {"env_runners": {EPISODES_KEY: records}, "training_iteration": it["iteration"]}
        recorder.on_train_result(result=result)
        row = {"env_steps": it["env_steps"], "x_pos_smoothed": result[metric_key("x_pos_smoothed")]}
        for n in windows:
            row[f"x_pos_last{n}"] = result[metric_key(f"x_pos_last{n}")]
        out.append(row)
    return out


def agent_episodes(count: int, *, seed: int = 0, favour: float = 0.0) -> list:
    """``count`` episodes on SMB1 1-1 (simple actions) of an agent that presses right with
    probability ``favour`` and a uniform action otherwise: [x_pos, ending, length] each."""
    from envs import MarioEnv

    env = MarioEnv({"action_set": "simple"})
    right = env.get_action_meanings().index("right")
    rng = np.random.default_rng(seed)
    episodes = []
    try:
        for k in range(count):
            env.reset(seed=seed + k)
            done, length, info = False, 0, {}
            while not done:
                action = right if rng.random() < favour else int(rng.integers(env.action_space.n))
                _, _, terminated, truncated, info = env.step(action)
                done, length = terminated or truncated, length + 1
            how = "flag" if info["flag_get"] else "time-out" if info["time_left"] == 0 else "death"
            episodes.append([info["x_pos_max"], how, length])
    finally:
        env.close()
    return episodes


def splice(iterations: list[dict], at: int, *, pool: list, seed: int) -> list[dict]:
    """The curve with a collapse to the random agent's level (``pool``) from env step ``at`` on."""
    rng = np.random.default_rng(seed)
    spliced = []
    for it in iterations:
        if it["env_steps"] > at:
            drawn = rng.integers(len(pool), size=len(it["episodes"]))
            it = {**it, "episodes": [pool[i] for i in drawn]}
        spliced.append(it)
    return spliced


def first_verdict(rows: list[dict], rule: Rule, *, start: int = 0) -> int | None:
    """Env steps of the first collapse verdict, as ``SweepStopper`` would give it to a trial
    watched from env step ``start`` on (its grace period counted from there), or None."""
    detector = CollapseDetector(rule.collapse, "max")
    for row in rows:
        if row["env_steps"] <= start:
            continue
        value = row[rule.metric]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        grace_over = row["env_steps"] - start >= rule.collapse.grace_env_steps
        if detector.update(float(value)) and grace_over:
            return row["env_steps"]
    return None


def deepest_sustained_drop(rows: list[dict], rule: Rule, *, start: int = 0) -> float:
    """The largest fraction below its running peak that the metric stayed for ``window``
    consecutive iterations after the grace period: how close a healthy curve came to a verdict
    (a rule with ``drop_fraction`` at or below this would have fired)."""
    peak, drops, deepest = None, [], 0.0
    for row in rows:
        value = row[rule.metric]
        if row["env_steps"] <= start or value is None or math.isnan(value):
            continue
        peak = value if peak is None else max(peak, value)
        drops.append(1 - value / peak if peak > 0 else 0.0)
        if row["env_steps"] - start >= rule.collapse.grace_env_steps:
            deepest = max(deepest, min(drops[-rule.collapse.window :]))
    return deepest


def evaluate_rules(curves: dict[str, list[dict]], pool: list) -> list[dict]:
    """False positives on the healthy curves and delays on the spliced ones, per rule."""
    healthy = {name: metrics(its) for name, its in curves.items()}
    watched = [
        (name, start)
        for name, its in curves.items()
        for start in range(0, its[-1]["env_steps"] - 2 * TARGET_DELAY, WATCH_FROM_EVERY)
    ]
    level = statistics.mean(x for x, _, _ in pool)
    spliced, invisible = [], 0
    for name, its in curves.items():
        end = its[-1]["env_steps"]
        for at in range(2 * SPLICE_EVERY, end - TARGET_DELAY + 1, SPLICE_EVERY):
            if (_value_at(healthy[name], "x_pos_last100", at) or 0) < VISIBLE_FALL * level:
                invisible += 1
                continue
            # Seeded by the curve's name, so adding a curve leaves the others' draws alone.
            drawn = splice(its, at, pool=pool, seed=zlib.crc32(name.encode()) + at // 1000)
            spliced.append((name, at, metrics(drawn)))
    results = []
    for rule in RULES:
        false = [
            (name, start)
            for name, start in watched
            if first_verdict(healthy[name], rule, start=start) is not None
        ]
        delays = []
        for _, at, rows in spliced:
            verdict = first_verdict(rows, rule)
            # A verdict before the splice is a false positive, already counted on the healthy run.
            delays.append(None if verdict is None or verdict < at else verdict - at)
        caught = [d for d in delays if d is not None and d <= TARGET_DELAY]
        margin = max(
            deepest_sustained_drop(healthy[name], rule, start=start) for name, start in watched
        )
        results.append(
            {
                "rule": rule.name,
                "metric": rule.metric,
                "drop_fraction": rule.collapse.drop_fraction,
                "window": rule.collapse.window,
                "healthy_curves": len(healthy),
                "healthy_watches": len(watched),
                "false_positives": len(false),
                "deepest_healthy_drop": round(margin, 3),
                "spliced": len(spliced),
                "not_spliced_already_near_the_level": invisible,
                "detected_within_target": len(caught),
                "delays": delays,
                "median_delay": statistics.median(caught) if caught else None,
                "max_delay": max(caught) if caught else None,
            }
        )
    return results


def _value_at(rows: list[dict], metric: str, env_steps: int) -> float | None:
    before = [r[metric] for r in rows if r["env_steps"] <= env_steps and r[metric] is not None]
    return before[-1] if before else None


def _mean_x_pos(iterations: list[dict], low: int, high: int) -> float:
    xs = [x for it in iterations if low < it["env_steps"] <= high for x, _, _ in it["episodes"]]
    return statistics.mean(xs) if xs else math.nan


def rung_agreement(curves: dict[str, list[dict]]) -> list[dict]:
    """Per rung and metric: how often the rung's order of two trials is their order before the
    next rung, and the metric's iteration-to-iteration swing against the trials' gap at the rung."""
    out = []
    for rung, ranked in RUNGS:
        names = [n for n, its in curves.items() if its[-1]["env_steps"] >= ranked[1]]
        rows = {n: metrics(curves[n]) for n in names}
        pairs = list(itertools.combinations(names, 2))
        for metric in ("x_pos_smoothed", "x_pos_last50", "x_pos_last100", "x_pos_last200"):
            agree, gaps, swings = 0, [], []
            for a, b in pairs:
                va, vb = _value_at(rows[a], metric, rung), _value_at(rows[b], metric, rung)
                later = _mean_x_pos(curves[a], *ranked) - _mean_x_pos(curves[b], *ranked)
                agree += (va - vb) * later > 0
                gaps.append(abs(va - vb))
            for n in names:
                values = [r[metric] for r in rows[n] if rung / 2 <= r["env_steps"] <= ranked[1]]
                swings.append(statistics.pstdev(np.diff(values)) if len(values) > 2 else math.nan)
            out.append(
                {
                    "rung": rung,
                    "ranked_over": list(ranked),
                    "metric": metric,
                    "pairs": len(pairs),
                    "rung_agrees_with_later_ranking": agree,
                    "median_gap_at_rung": statistics.median(gaps) if gaps else None,
                    "median_iteration_swing_sd": statistics.median(swings) if swings else None,
                }
            )
    return out


def make_levels(n: int) -> int:
    """Play ``n`` episodes of each collapse level into LEVELS (the episodes a collapsed trial
    plays, spliced into real curves by ``evaluate_rules``)."""
    levels = {
        "collapsed": agent_episodes(n, favour=0.8),
        "uniform": agent_episodes(n, seed=10_000),
    }
    LEVELS.parent.mkdir(parents=True, exist_ok=True)
    LEVELS.write_text(json.dumps(levels))
    for name, episodes in levels.items():
        xs = [x for x, _, _ in episodes]
        print(f"{name}: {len(xs)} episodes, mean x_pos {statistics.mean(xs):.0f}")
    return 0


def print_tables(curves: dict, pool: list, rules: list[dict], rungs: list[dict], *, level: str):
    print(
        f"collapse level {level!r}: {len(pool)} real episodes, mean x_pos "
        f"{statistics.mean(x for x, _, _ in pool):.0f}"
    )
    print(
        f"{len(curves)} real curves: "
        + ", ".join(f"{n} ({its[-1]['env_steps']:,} env steps)" for n, its in curves.items())
    )
    skipped = rules[0]["not_spliced_already_near_the_level"]
    print(
        f"{rules[0]['spliced']} spliced collapses ({skipped} splice points skipped: the trial "
        "stood "
        f"below {VISIBLE_FALL}x the collapse level there)"
    )
    print(
        f"{'rule':<78} {'FP':>5} {'deepest':>7} {'caught':>8} {'median':>8} {'max':>8}"
        "   (deepest: healthy drop held for the window; delays in env steps)"
    )
    for r in rules:
        median = "-" if r["median_delay"] is None else f"{r['median_delay']:,}"
        worst = "-" if r["max_delay"] is None else f"{r['max_delay']:,}"
        print(
            f"{r['rule']:<78} {r['false_positives']}/{r['healthy_watches']:<3} "
            f"{r['deepest_healthy_drop']:>7.0%} "
            f"{r['detected_within_target']}/{r['spliced']:<5} {median:>8} {worst:>8}"
        )
    print("\nASHA rungs against the ranking by mean x_pos before the next rung")
    for r in rungs:
        low, high = r["ranked_over"]
        gap, swing = r["median_gap_at_rung"], r["median_iteration_swing_sd"]
        print(
            f"rung {r['rung']:>7,} (ranked over {low:,}-{high:,}) {r['metric']:<16} agrees "
            f"{r['rung_agrees_with_later_ranking']}/{r['pairs']} pairs; median gap at the rung "
            f"{'-' if gap is None else f'{gap:.0f}'}, median iteration swing (sd) "
            f"{'-' if swing is None or math.isnan(swing) else f'{swing:.0f}'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/collapse_detection.py")
    parser.add_argument("curves", nargs="*", type=Path, help="iteration logs (.jsonl)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--make-levels",
        type=int,
        metavar="N",
        help=f"play N episodes of each collapse level into {LEVELS.name} and exit",
    )
    parser.add_argument("--level", choices=("collapsed", "uniform"), default="collapsed")
    args = parser.parse_args(argv)
    if args.make_levels:
        return make_levels(args.make_levels)
    paths = args.curves or sorted(DATA.glob("*.jsonl"))
    if not paths:
        print(f"error: no curves given and none in {DATA}", file=sys.stderr)
        return 2
    curves = {p.stem: load(p) for p in paths}
    pool = json.loads(LEVELS.read_text())[args.level]
    rules, rungs = evaluate_rules(curves, pool), rung_agreement(curves)
    if args.json:
        print(json.dumps({"curves": list(curves), "rules": rules, "rungs": rungs}))
        return 0
    print_tables(curves, pool, rules, rungs, level=args.level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
