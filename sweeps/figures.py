"""The sweep report's figures, drawn with matplotlib from a :class:`~sweeps.queries.SweepData`.

matplotlib, not plotly: a PNG needs no browser (kaleido >= 1 drives a Chrome it must find or
download), the page needs no 4.6 MB script, and a report can be written on any cluster node.
Each function returns a bare ``Figure`` (no pyplot, so no global state and no GUI backend).

Every artist that stands for a trial carries a ``gid`` ``"<kind>:<trial_id>[:<detail>]"`` (e.g.
``"metric:94e5147f"``, ``"stop:94e5147f:asha"``); the tests read figures through these, and
they become element ids in an SVG export.
"""

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeGuard

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sweeps.queries import ENDINGS, Importances, SweepData
from sweeps.stats import ConfirmedConfig, performance_profile

if TYPE_CHECKING:
    from matplotlib.typing import LegendLocType

__all__ = [
    "STOP_STYLES",
    "episode_ends",
    "flag_rate",
    "importances",
    "learning_curves",
    "learning_curves_per_trial",
    "parallel_coordinates",
    "performance_profiles",
    "search_scatter",
    "stop_reason",
    "trial_colours",
    "training_health",
]

# (marker, colour) per stop reason; "running" is a trial with no stop reason yet.
STOP_STYLES: dict[str, tuple[str, str]] = {
    "completed": ("o", "#2a9d3f"),
    "asha": ("v", "#e07b00"),
    "collapse": ("X", "#c2185b"),
    "pbt": ("D", "#6a3d9a"),
    "error": ("x", "#d00000"),
    "interrupted": ("s", "#555555"),
    "running": (">", "#1f77b4"),
}
ENDING_COLOURS = {"death": "#d62728", "flag": "#2ca02c", "time-out": "#7f7f7f"}
_LEGEND_MAX_TRIALS = 20  # past this a legend hides the plot; the small multiples name trials
_DPI = 100


def stop_reason(trial: Mapping) -> str:
    """The trial's stop reason as stored, ``running`` while it has none."""
    return trial.get("stop_reason") or "running"


def trial_colours(trial_ids: Sequence[str]) -> dict[str, tuple]:
    """One colour per trial, the same in every figure: tab10/tab20, else a spread of turbo."""
    n = len(trial_ids)
    if n <= 10:
        palette = [colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:
        palette = [colormaps["tab20"](i) for i in range(n)]
    else:
        palette = [colormaps["turbo"](0.05 + 0.9 * i / (n - 1)) for i in range(n)]
    return dict(zip(trial_ids, palette, strict=True))


def _grid(n: int, *, width: float = 14.0, row_height: float = 2.3) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` small panels, 4 a row up to 16 trials, about square beyond."""
    cols = max(1, min(n, 4 if n <= 16 else math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    height = (row_height if cols <= 4 else 1.7) * rows + 0.6
    fig = Figure(figsize=(width, max(height, 2.6)), dpi=_DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _last_finite(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    return (x[ok[-1]], y[ok[-1]]) if ok.size else None


def _best_index(metric: np.ndarray, best: float | None) -> int | None:
    """The first iteration whose metric is the trial's stored best metric (matched by value:
    a checkpoint's directory index is not its training iteration)."""
    if best is None:
        return None
    hits = np.flatnonzero(np.isclose(metric, best, rtol=1e-9, atol=1e-9))
    return int(hits[0]) if hits.size else None


def _peak_index(metric: np.ndarray, mode: str) -> int | None:
    if not np.isfinite(metric).any():
        return None
    return int(np.nanargmax(metric) if mode == "max" else np.nanargmin(metric))


def _mark_trial(ax: Axes, trial: Mapping, curve: Mapping, mode: str) -> None:
    """Stop marker (shape by reason) at the last point, best-metric star, collapse peak."""
    tid, steps, metric = trial["trial_id"], curve["env_steps"], curve["metric"]
    reason = stop_reason(trial)
    marker, edge = STOP_STYLES.get(reason, ("P", "#000000"))
    last = _last_finite(steps, metric)
    # The star goes under the stop marker (drawn open), so both show when the last iteration
    # is also the best, as it is for most trials still improving.
    best = _best_index(metric, trial.get("best_metric"))
    if best is not None:
        ax.plot(
            steps[best],
            metric[best],
            marker="*",
            ms=10,
            ls="none",
            mfc="gold",
            mec="black",
            mew=0.6,
            zorder=5,
            gid=f"best:{tid}",
        )
    if last is not None:
        ax.plot(
            *last,
            marker=marker,
            ms=12,
            ls="none",
            mfc="none",
            mec=edge,
            mew=2,
            zorder=6,
            gid=f"stop:{tid}:{reason}",
        )
    peak = _peak_index(metric, mode)
    if reason == "collapse" and peak is not None and last is not None:
        ax.plot(
            [steps[peak], last[0]],
            [metric[peak], metric[peak]],
            ls=":",
            color=edge,
            lw=1,
            gid=f"peak:{tid}",
        )
        ax.annotate(
            f"peak {metric[peak]:.4g}",
            (steps[peak], metric[peak]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
            color=edge,
        )


def _marker_legend(
    where: Axes | Figure,
    reasons: set[str],
    *,
    best: bool = True,
    loc: "LegendLocType" = "lower right",
) -> None:
    """Which marker means which stop reason (outside the plot where curves fill it)."""
    handles = [
        Line2D(
            [],
            [],
            marker=STOP_STYLES.get(r, ("P", "k"))[0],
            ls="none",
            mfc="white",
            mec=STOP_STYLES.get(r, ("P", "k"))[1],
            mew=1.6,
            ms=8,
            label=f"stop: {r}",
        )
        for r in sorted(reasons)
    ]
    if best:
        handles.append(
            Line2D(
                [], [], marker="*", ls="none", mfc="gold", mec="black", ms=11, label="best metric"
            )
        )
    where.legend(handles=handles, loc=loc, fontsize=8, framealpha=0.8)


def _steps_axis(ax: Axes) -> None:
    ax.set_xlabel("env steps (lifetime)")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.grid(alpha=0.3)


def learning_curves(data: SweepData, colours: Mapping[str, tuple]) -> Figure:
    """All trials on one figure: the sweep's metric, then x_pos (mean solid, max dotted)."""
    metric_name, mode = data.sweep["metric"], data.sweep["mode"]
    fig = Figure(figsize=(14, 9), dpi=_DPI, layout="constrained")
    ax_metric, ax_x = fig.subplots(2, 1, sharex=True)
    reasons = set()
    for trial in data.trials:
        tid = trial["trial_id"]
        curve = data.curves.get(tid)
        if curve is None:
            continue
        colour = colours[tid]
        ax_metric.plot(
            curve["env_steps"],
            curve["metric"],
            color=colour,
            lw=1.2,
            label=tid,
            gid=f"metric:{tid}",
        )
        _mark_trial(ax_metric, trial, curve, mode)
        reasons.add(stop_reason(trial))
        ax_x.plot(
            curve["env_steps"], curve["x_pos_mean"], color=colour, lw=1.1, gid=f"x_pos_mean:{tid}"
        )
        ax_x.plot(
            curve["env_steps"],
            curve["x_pos_max"],
            color=colour,
            lw=0.8,
            ls=":",
            gid=f"x_pos_max:{tid}",
        )
        _draw_evaluations(ax_x, data, tid, colour)
    ax_metric.set_ylabel(metric_name)
    ax_metric.set_title(
        f"{metric_name} per trial ({'higher' if mode == 'max' else 'lower'} is better)"
    )
    ax_metric.grid(alpha=0.3)
    _marker_legend(fig, reasons, loc="outside right lower")
    if len(data.curves) <= _LEGEND_MAX_TRIALS:
        fig.legend(
            *ax_metric.get_legend_handles_labels(),
            loc="outside right upper",
            fontsize=8,
            title="trial",
        )
    evaluated = " ◆ evaluation during training (mean x_pos)" if data.training_evaluations else ""
    ax_x.set_ylabel("x_pos (mean solid, max dotted)")
    ax_x.set_title(f"furthest x position per episode, per iteration{evaluated}")
    _steps_axis(ax_x)
    return fig


def _draw_evaluations(ax: Axes, data: SweepData, tid: str, colour: tuple) -> None:
    """A trial's evaluations during training (``--eval-every``): mean x_pos where each was played,
    each labelled with its flag rate."""
    points = [e for e in data.training_evaluations if e["trial_id"] == tid]
    if not points:
        return
    steps = [p["env_steps"] for p in points]
    x_pos = [p["x_pos_mean"] for p in points]
    ax.plot(steps, x_pos, ls="", marker="D", ms=5, color=colour, mec="k", gid=f"eval:{tid}")
    for point in points:
        ax.annotate(
            f"{point['flag_rate']:.0%}",
            (point["env_steps"], point["x_pos_mean"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=6,
        )


def learning_curves_per_trial(data: SweepData, colours: Mapping[str, tuple]) -> Figure:
    """One panel per trial (best first): metric, x_pos mean and max, stop and best markers."""
    mode = data.sweep["mode"]
    trials = [t for t in data.trials if t["trial_id"] in data.curves]
    fig, axes = _grid(len(trials))
    same_scale = "x_pos" in data.sweep["metric"]
    for ax, trial in zip(axes, trials, strict=True):
        tid = trial["trial_id"]
        curve = data.curves[tid]
        ax.plot(
            curve["env_steps"], curve["metric"], color=colours[tid], lw=1.3, gid=f"metric:{tid}"
        )
        _mark_trial(ax, trial, curve, mode)
        ax_x = ax if same_scale else ax.twinx()
        ax_x.plot(
            curve["env_steps"], curve["x_pos_mean"], color="0.45", lw=0.8, gid=f"x_pos_mean:{tid}"
        )
        ax_x.plot(
            curve["env_steps"],
            curve["x_pos_max"],
            color="0.7",
            lw=0.7,
            ls=":",
            gid=f"x_pos_max:{tid}",
        )
        _draw_evaluations(ax_x, data, tid, colours[tid])
        checkpoint = (trial.get("best_checkpoint") or "").rstrip("/").rsplit("/", 1)[-1]
        # Past 16 panels a row there is no room for the checkpoint: the leaderboard names it.
        title = f"{tid} · {stop_reason(trial)}"
        if checkpoint and len(trials) <= 16:
            title += f" · {checkpoint}"
        ax.set_title(title, fontsize=8 if len(trials) <= 16 else 7)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_offset_text().set_fontsize(7)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"per trial: {data.sweep['metric']} (colour), x_pos mean (grey) and max "
        "(dotted); ★ best metric, ◆ evaluation during training; title: stop reason · best "
        "checkpoint",
        fontsize=10,
    )
    return fig


def _param_values(trials: Sequence[Mapping], name: str) -> list:
    return [(t.get("params") or {}).get(name) for t in trials]


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def search_scatter(data: SweepData, colours: Mapping[str, tuple]) -> Figure:
    """Each searched parameter against the trial's best metric; log axes where searched log."""
    space = data.sweep["search_space"] or {}
    names = list(space)
    fig = Figure(figsize=(min(14, 4.6 * max(len(names), 1)), 4.2), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, max(len(names), 1), squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        domain = space[name] if isinstance(space[name], Mapping) else {}
        choices = domain.get("choices")
        for trial in data.trials:
            value = (trial.get("params") or {}).get(name)
            best = trial.get("best_metric")
            if best is None or value is None:
                continue
            x = choices.index(value) if choices and value in choices else value
            if not _is_number(x):
                continue
            marker, _ = STOP_STYLES.get(stop_reason(trial), ("P", "k"))
            ax.plot(
                x,
                best,
                marker=marker,
                ls="none",
                ms=8,
                mfc=colours[trial["trial_id"]],
                mec="black",
                mew=0.5,
                gid=f"search:{trial['trial_id']}:{name}",
            )
        if choices:
            ax.set_xticks(range(len(choices)), [str(c) for c in choices], fontsize=8)
        elif domain.get("log"):
            ax.set_xscale("log")
        if "low" in domain and "high" in domain and not choices:
            ax.axvspan(domain["low"], domain["high"], color="0.95", zorder=0)
        ax.set_xlabel(name + (" (log)" if domain.get("log") else ""))
        ax.set_ylabel(f"best {data.sweep['metric']}")
        ax.grid(alpha=0.3)
    _marker_legend(axes[0], {stop_reason(t) for t in data.trials}, best=False)
    fig.suptitle(
        "searched parameters against each trial's best metric (marker: stop reason)", fontsize=10
    )
    return fig


def _scaled(value: object, domain: Mapping, observed: Sequence) -> float | None:
    """``value`` on a 0..1 axis: its search bounds (log10 where searched log), else observed."""
    choices = domain.get("choices")
    if choices:
        return choices.index(value) / max(len(choices) - 1, 1) if value in choices else None
    if _is_number(value):
        numbers = [v for v in observed if _is_number(v)]
        low = domain.get("low", min(numbers))
        high = domain.get("high", max(numbers))
        if domain.get("log") and low > 0 and value > 0:
            value, low, high = math.log10(value), math.log10(low), math.log10(high)
        return 0.5 if high == low else (value - low) / (high - low)
    return None


def parallel_coordinates(data: SweepData) -> Figure:
    """One line per trial through every parameter (scaled to its search range) and the best
    metric; colour by best metric, grey where a trial has none yet."""
    space = data.sweep["search_space"] or {}
    names = list(space)
    axes_names = [*names, f"best {data.sweep['metric']}"]
    metrics = [t["best_metric"] for t in data.trials if t.get("best_metric") is not None]
    lo, hi = (min(metrics), max(metrics)) if metrics else (0.0, 1.0)
    fig = Figure(figsize=(14, 5), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["viridis"]
    ordered = sorted(data.trials, key=lambda t: t.get("best_metric") is not None)
    for trial in ordered:  # trials without a metric first, so coloured lines lie on top
        ys = [
            _scaled(
                (trial.get("params") or {}).get(name),
                space[name] if isinstance(space[name], Mapping) else {},
                _param_values(data.trials, name),
            )
            for name in names
        ]
        best = trial.get("best_metric")
        level = 0.5 if hi == lo or best is None else (best - lo) / (hi - lo)
        if data.sweep["mode"] == "min" and best is not None:
            level = 1 - level
        ys.append(level if best is not None else None)
        style = (
            {"color": cmap(level), "lw": 1.4, "alpha": 0.85}
            if best is not None
            else {"color": "0.6", "lw": 1.0, "ls": "--", "alpha": 0.7}
        )
        y_values = np.array([np.nan if v is None else v for v in ys], dtype=float)
        ax.plot(
            range(len(axes_names)),
            y_values,
            marker="o",
            ms=3,
            gid=f"parallel:{trial['trial_id']}",
            **style,
        )
    metric_range = (hi, lo) if data.sweep["mode"] == "min" else (lo, hi)
    _label_axes(ax, axes_names, space, metric_range)
    ax.set_title(
        "parallel coordinates: parameters scaled to their search range, colour = best "
        "metric (yellow best), grey dashed = no metric yet",
        fontsize=10,
    )
    return fig


def _label_axes(ax, axes_names: list[str], space: Mapping, metric_range: tuple) -> None:
    """A vertical axis per parameter, labelled with its search range's ends (the metric's last)."""
    for i, name in enumerate(axes_names):
        ax.axvline(i, color="black", lw=0.8)
        domain = space.get(name, {}) if i < len(space) else {}
        domain = domain if isinstance(domain, Mapping) else {}
        low, high = metric_range if i == len(space) else (domain.get("low"), domain.get("high"))
        if domain.get("choices"):
            low, high = domain["choices"][0], domain["choices"][-1]
        for y, text in ((0, low), (1, high)):
            if text is not None:
                label = f"{text:.3g}" if _is_number(text) else str(text)
                ax.annotate(
                    label,
                    (i, y),
                    xytext=(4, -10 if y == 0 else 4),
                    textcoords="offset points",
                    fontsize=8,
                )
    ax.set_xticks(
        range(len(axes_names)),
        [
            n + (" (log)" if isinstance(space.get(n), Mapping) and space[n].get("log") else "")
            for n in axes_names
        ],
    )
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    ax.set_xlim(-0.2, len(axes_names) - 0.6)


def importances(values: Importances) -> Figure:
    """Optuna's parameter importances as bars, most important on top."""
    items = sorted(values.values.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(8, 0.5 * len(items) + 1.4), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0", gid="importances")
    for i, (_, v) in enumerate(items):
        ax.annotate(
            f"{v:.2f}", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.set_xlabel("importance (sums to 1)")
    ax.set_title(f"parameter importances, {values.complete_trials} COMPLETE trials", fontsize=10)
    return fig


def episode_ends(data: SweepData) -> Figure:
    """Per trial, where episodes ended (x_pos), stacked by death / flag / time-out."""
    trials = [t for t in data.trials if t["trial_id"] in data.ends.counts]
    fig, axes = _grid(len(trials), row_height=2.0)
    edges = data.ends.edges
    for ax, trial in zip(axes, trials, strict=True):
        tid = trial["trial_id"]
        bottom = np.zeros(len(edges) - 1)
        for ending in ENDINGS:
            # One filled step patch per ending, stacked on the ones below: the look of bars
            # without a rectangle per bin (a 100-trial report drew 12,000 of them in 15 s).
            top = bottom + data.ends.counts[tid][ending]
            ax.stairs(
                top,
                edges,
                baseline=bottom,
                fill=True,
                color=ENDING_COLOURS[ending],
                label=ending,
                gid=f"ends:{tid}:{ending}",
            )
            bottom = top
        total = int(bottom.sum())
        flags = int(data.ends.counts[tid]["flag"].sum())
        many = len(trials) > 16
        title = (
            f"{tid} · {total:,} ep · {flags / total:.0%} flag"
            if many
            else (f"{tid} · {total:,} episodes · {flags / total:.0%} flag")
        )
        ax.set_title(title, fontsize=7 if many else 8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, axis="y")
    if axes:
        axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        "where episodes ended: x_pos at the end, by death / flag / time-out "
        "(time-out = game clock at 0)",
        fontsize=10,
    )
    return fig


def _overlay(ax: Axes, data: SweepData, colours: Mapping[str, tuple], column: str) -> bool:
    """Plot ``column`` of every trial on ``ax``; False when no trial has a value for it."""
    drawn = False
    for trial in data.trials:
        tid = trial["trial_id"]
        curve = data.curves.get(tid)
        if curve is None or not np.isfinite(curve[column]).any():
            continue
        ax.plot(
            curve["env_steps"], curve[column], color=colours[tid], lw=1.0, gid=f"{column}:{tid}"
        )
        drawn = True
    return drawn


def imitation(data: SweepData) -> Figure:
    """The BC stage and what came of it: BC's policy loss per iteration (no env steps; the kept
    clones marked), then every search trial's metric on the env-step axis, coloured by the BC
    iterations it started from (0: from scratch)."""
    fig = Figure(figsize=(14, 4.5), dpi=_DPI, layout="constrained")
    ax_bc, ax_ppo = fig.subplots(1, 2, width_ratios=(1, 2.5))
    rows = data.bc_iterations
    ax_bc.plot([r["iteration"] for r in rows], [r["policy_loss"] for r in rows], gid="bc_loss")
    kept = [r for r in rows if r["checkpoint"]]
    ax_bc.plot(
        [r["iteration"] for r in kept],
        [r["policy_loss"] for r in kept],
        ls="",
        marker="o",
        color="k",
        gid="bc_kept",
    )
    ax_bc.set_xlabel("BC iteration (no env steps)")
    ax_bc.set_ylabel("BC policy loss")
    ax_bc.set_title("behaviour cloning (● a clone trials start from)", fontsize=10)
    ax_bc.grid(alpha=0.3)
    budgets = sorted({_budget(t) for t in data.search_only().trials})
    cmap = colormaps["viridis"]
    shade = {b: cmap(k / max(len(budgets) - 1, 1)) for k, b in enumerate(budgets)}
    for trial in data.search_only().trials:
        curve = data.curves.get(trial["trial_id"])
        if curve is None:
            continue
        budget = _budget(trial)
        ax_ppo.plot(
            curve["env_steps"],
            curve["metric"],
            color=shade[budget],
            lw=1.2,
            marker="o",  # a trial ASHA stopped after one iteration is one point
            ms=3,
            label=f"bc_iterations {budget}",
            gid=f"bc:{trial['trial_id']}:{budget}",
        )
    handles, labels = ax_ppo.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax_ppo.legend(unique.values(), unique.keys(), fontsize=8)
    ax_ppo.set_ylabel(data.sweep["metric"])
    ax_ppo.set_title("PPO from each clone, env steps from 0 (BC cost none)", fontsize=10)
    _steps_axis(ax_ppo)
    return fig


def _budget(trial: Mapping) -> int:
    return int((trial.get("params") or {}).get("bc_iterations", 0))


def flag_rate(data: SweepData, colours: Mapping[str, tuple]) -> Figure:
    """Each trial's flag rate (share of the iteration's episodes that got the flag)."""
    fig = Figure(figsize=(14, 4), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    _overlay(ax, data, colours, "flag_rate")
    _trial_legend(fig, ax, data)
    ax.set_ylabel("flag rate")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("flag rate per iteration", fontsize=10)
    _steps_axis(ax)
    return fig


_HEALTH = (
    ("entropy", "policy entropy"),
    ("kl", "KL (mean_kl_loss)"),
    ("loss", "total loss"),
    ("vf_loss", "value-function loss (PPO)"),
)


def training_health(data: SweepData, colours: Mapping[str, tuple]) -> Figure:
    """Entropy, KL, total loss and value loss per trial, against env steps."""
    fig = Figure(figsize=(14, 7), dpi=_DPI, layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (column, title) in zip(axes, _HEALTH, strict=True):
        if not _overlay(ax, data, colours, column):
            ax.text(
                0.5,
                0.5,
                f"no {column} in the recorded results",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
        if column in ("loss", "vf_loss") and _positive(data, column):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        _steps_axis(ax)
    _trial_legend(fig, axes[0], data)
    return fig


def _trial_legend(fig: Figure, ax: Axes, data: SweepData) -> None:
    if len(data.curves) <= _LEGEND_MAX_TRIALS and ax.get_lines():
        handles, labels = [], []
        for line in ax.get_lines():
            handles.append(line)
            gid = line.get_gid()
            assert gid is not None  # every line drawn here carries one
            labels.append(gid.split(":", 1)[1])
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="trial")


def _positive(data: SweepData, column: str) -> bool:
    values = [c[column][np.isfinite(c[column])] for c in data.curves.values()]
    values = [v for v in values if v.size]
    return bool(values) and all((v > 0).all() for v in values)


def performance_profiles(confirmed: Sequence[ConfirmedConfig], *, metric: str) -> Figure:
    """Per confirmed config, the fraction of its runs whose final metric is above each value
    (rliable's performance profile: a curve to the right is better for every threshold)."""
    scores = np.concatenate([np.asarray(c.scores, dtype=float) for c in confirmed])
    low, high = float(scores.min()), float(scores.max())
    margin = max(1e-9, 0.05 * (high - low) or 0.05 * abs(high) or 1.0)
    thresholds = np.linspace(low - margin, high + margin, 200)
    fig = Figure(figsize=(7.5, 4.2), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    palette = [colormaps["tab10"](i % 10) for i in range(len(confirmed))]
    for rank, (config, colour) in enumerate(zip(confirmed, palette, strict=True), 1):
        ax.step(
            thresholds,
            performance_profile(config.scores, thresholds),
            where="post",
            color=colour,
            lw=2,
            label=f"#{rank} {config.repeats} (N={config.n})",
            gid=f"profile:{config.repeats}",
        )
    ax.set_xlabel(f"final {metric}")
    ax.set_ylabel("fraction of runs above")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _metric_at(curve: Mapping | None, env_steps: float | None) -> float | None:
    """The member's metric at its last iteration at or before ``env_steps`` (None: none yet)."""
    if curve is None or env_steps is None:
        return None
    steps, metric = curve["env_steps"], curve["metric"]
    before = np.nonzero(steps <= env_steps)[0]
    return float(metric[before[-1]]) if len(before) else None


def pbt_lineage(data: SweepData, colours: Mapping[str, tuple]) -> Figure:
    """Members' metric over env steps; an arrow from the donor's point to the member at each
    exploit (the member continues from the donor's checkpoint); x marks recorded collapses."""
    fig = Figure(figsize=(14, 6), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    for trial in data.trials:
        tid = trial["trial_id"]
        curve = data.curves.get(tid)
        if curve is not None:
            ax.plot(
                curve["env_steps"],
                curve["metric"],
                color=colours[tid],
                lw=1.2,
                label=tid,
                gid=f"member:{tid}",
            )
    for event in data.lineage:
        tid = event["trial_id"]
        colour = colours.get(tid, "k")
        if event["kind"] == "collapse":
            ax.plot(
                event["env_steps"],
                event["metric"],
                "x",
                color=colour,
                ms=9,
                mew=2,
                gid=f"collapse:{tid}:{event['training_iteration']}",
            )
            continue
        donor_metric = event["donor_metric"]
        if donor_metric is None:
            donor_metric = _metric_at(data.curves.get(event["donor"]), event["donor_env_steps"])
        member = (event["env_steps"], event["metric"])
        donor = (event["donor_env_steps"], donor_metric)
        if None in member or None in donor:
            continue
        ax.annotate(
            "",
            xy=member,
            xytext=donor,
            arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.0, "alpha": 0.8},
            gid=f"exploit:{tid}:{event['training_iteration']}",
        )
    exploits = sum(e["kind"] == "exploit" for e in data.lineage)
    collapses = len(data.lineage) - exploits
    ax.set_ylabel(data.sweep["metric"])
    ax.set_title(
        f"population: {len(data.curves)} members, {exploits} exploits (arrow: donor -> member), "
        f"{collapses} recorded collapses (x)"
    )
    _steps_axis(ax)
    if len(data.curves) <= _LEGEND_MAX_TRIALS:
        fig.legend(
            *ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8, title="member"
        )
    return fig


def _path(trial: Mapping, events: Sequence[Mapping], curve: Mapping | None, name: str):
    """(env steps, value) steps of one member's ``name``: its start, then each exploit's value,
    held to its last iteration."""
    # trials.params holds the member's latest values; its first exploit recorded the start.
    start = events[0]["old_params"] if events else trial.get("params")
    xs, ys = [0.0], [(start or {}).get(name)]
    for event in events:
        xs.append(event["env_steps"] or 0)
        ys.append((event["new_params"] or {}).get(name))
    if curve is not None and len(curve["env_steps"]):
        xs.append(float(np.nanmax(curve["env_steps"])))
        ys.append(ys[-1])
    return xs, [y if _is_number(y) else np.nan for y in ys]


def hyperparameter_paths(data: SweepData, colours: Mapping[str, tuple]) -> Figure:
    """Per searched parameter, each member's value over env steps (PBT's explored schedule)."""
    space = data.sweep["search_space"] or {}
    names = list(space)
    fig = Figure(figsize=(14, 3.6 * max(len(names), 1)), dpi=_DPI, layout="constrained")
    axes = fig.subplots(max(len(names), 1), 1, sharex=True, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        domain = space[name] if isinstance(space[name], Mapping) else {}
        for trial in data.trials:
            tid = trial["trial_id"]
            events = [e for e in data.lineage if e["trial_id"] == tid and e["kind"] == "exploit"]
            xs, ys = _path(trial, events, data.curves.get(tid), name)
            ax.plot(
                xs,
                ys,
                drawstyle="steps-post",
                color=colours[tid],
                lw=1.3,
                label=tid,
                gid=f"path:{tid}:{name}",
            )
        if domain.get("log"):
            ax.set_yscale("log")
        ax.set_ylabel(name + (" (log)" if domain.get("log") else ""))
        ax.grid(alpha=0.3)
    axes[0].set_title("each member's hyperparameters over env steps (a step = an exploit)")
    _steps_axis(axes[-1])
    if len(data.trials) <= _LEGEND_MAX_TRIALS:
        fig.legend(
            *axes[0].get_legend_handles_labels(),
            loc="outside right upper",
            fontsize=8,
            title="member",
        )
    return fig
