"""What ``benchmarks/learning.py`` prints of a trial: its curve in windows of env steps, the
first flag, the late training flag rate and its evaluations."""

import math

WINDOW = 25_000
"""Env steps per row of the printed curve."""


def windows(iterations: list[dict], size: int = WINDOW) -> list[dict]:
    """The curve in rows of ``size`` env steps: each row holds the episodes that ended in it."""
    rows: dict[int, dict] = {}
    for it in iterations:
        end = math.ceil(it["env_steps"] / size) * size
        row = rows.setdefault(end, {"env_steps": end, "time_s": 0.0, "x_pos": [], "endings": {}})
        row["time_s"] = it["time_s"]
        for x_pos, how, _ in it["episodes"]:
            row["x_pos"].append(x_pos)
            row["endings"][how] = row["endings"].get(how, 0) + 1
    return [rows[k] for k in sorted(rows)]


def first_flag(iterations: list[dict]) -> tuple[int, float] | None:
    """(env steps, wall seconds) of the first iteration in which an episode reached the flag."""
    for it in iterations:
        if any(how == "flag" for _, how, _ in it["episodes"]):
            return it["env_steps"], it["time_s"]
    return None


def flag_rate_since(iterations: list[dict], env_steps: int) -> float:
    """Flags per episode over the episodes that ended after ``env_steps``."""
    ends = [how for it in iterations if it["env_steps"] > env_steps for _, how, _ in it["episodes"]]
    return sum(how == "flag" for how in ends) / len(ends) if ends else math.nan


def summary(trial: dict) -> dict:
    """The figures a reader compares: speed, first flag, last-50k flag rate, the evaluation."""
    its = trial["iterations"]
    steps = its[-1]["env_steps"] if its else 0
    flag = first_flag(its)
    return {
        "variant": trial["variant"],
        "seed": trial["seed"],
        "env_steps": steps,
        "train_s": trial["train_s"],
        "env_steps_per_s": round(steps / trial["train_s"], 1) if trial["train_s"] else None,
        "episodes": sum(len(it["episodes"]) for it in its),
        "first_flag_env_steps": flag[0] if flag else None,
        "first_flag_s": flag[1] if flag else None,
        "flag_rate_last_50k": flag_rate_since(its, steps - 50_000),
        "bc": trial.get("bc"),
        "evaluations": [
            {
                "env_steps": at["env_steps"],
                "protocol": protocol,
                "episodes": len(ev),
                "x_pos_mean": sum(e["x_pos"] for e in ev) / len(ev),
                "flag_rate": sum(e["flag_get"] for e in ev) / len(ev),
            }
            for at in trial["evaluations"]
            for protocol, ev in at["results"].items()
        ],
    }


def format_trial(trial: dict) -> str:
    s = summary(trial)
    lines = [
        f"== {trial['variant']} ({trial['algo']}, seed {trial['seed']}): {trial['doc']}",
        f"{'env steps':>10} {'wall':>7} {'episodes':>8} {'x_pos mean':>10} {'x_pos max':>9} "
        f"{'flags':>5} {'death':>6} {'time-out':>8}",
    ]
    for row in windows(trial["iterations"]):
        xs, ends = row["x_pos"], row["endings"]
        mean = f"{sum(xs) / len(xs):,.0f}" if xs else "-"
        lines.append(
            f"{row['env_steps']:>10,} {row['time_s'] / 60:>6.1f}m {len(xs):>8} {mean:>10} "
            f"{max(xs, default=0):>9,} {ends.get('flag', 0):>5} {ends.get('death', 0):>6} "
            f"{ends.get('time-out', 0):>8}"
        )
    flag = (
        f"{s['first_flag_env_steps']:,} env steps, {s['first_flag_s'] / 60:.1f} min"
        if s["first_flag_env_steps"] is not None
        else "none"
    )
    lines.append(
        f"first flag: {flag}; {s['env_steps_per_s']} env steps/s; training flag rate over the "
        f"last 50k steps {s['flag_rate_last_50k']:.1%}"
    )
    if s["bc"]:
        bc = s["bc"]
        lines.insert(
            1,
            f"behaviour cloning first: {bc['iterations']} iterations in {bc['seconds']:.0f} s "
            f"(no env steps), policy loss {bc['policy_loss'][0]} -> {bc['policy_loss'][-1]}",
        )
    for ev in s["evaluations"]:
        lines.append(
            f"evaluation at {ev['env_steps']:,} env steps, {ev['episodes']} episodes "
            f"({ev['protocol']}): mean x_pos "
            f"{ev['x_pos_mean']:,.0f}, flag rate {ev['flag_rate']:.0%}"
        )
    return "\n".join(lines)
