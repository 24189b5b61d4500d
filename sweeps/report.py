"""The sweep report, read back from the results store (what was really recorded).

``write_report`` writes one self-contained HTML page (every image inlined as a data URI, no
script, no external URL: it opens from disk with no network) plus a PNG of each figure; the
runner calls it at a sweep's end and while it runs, and ``python -m sweeps.report NAME [--out DIR]
[--db-url URL]`` does the same from a shell and prints the page's path. The page is one snapshot
of the store (:func:`sweeps.queries.read_sweep`), the figures are :mod:`sweeps.figures`, the
console's leaderboard is :mod:`sweeps.leaderboard`; this module assembles the page.
"""

import base64
import html
import io
import json
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from callbacks.store import default_state_dir
from callbacks.store.errors import StoreError
from sweeps import figures
from sweeps.cli import OneLineParser, SweepError, add_db_url_flag, db_url_of
from sweeps.leaderboard import interval_text, params_text
from sweeps.queries import Importances, ReportError, SweepData, read_sweep, study_importances
from sweeps.schedule import Schedule
from sweeps.stats import FINAL_METRIC, ConfirmedConfig, summarise_confirmed

__all__ = ["ReportError", "build_figures", "main", "render_html", "write_report"]

# -- the HTML report ----------------------------------------------------------------------------

# A page the runner rewrites while the sweep runs reloads itself (no script needed).
RUNNING_REFRESH_S = 60
_FIGURE_DPI = 100


def _rung_cells(data: SweepData, rungs: Sequence[int]) -> list[tuple[dict, list]]:
    """Per trial (best first): per rung, None (not reached) or (metric at the rung, cut there).

    The value at a rung is the metric of the trial's first iteration at or past it (what ASHA
    recorded); a trial was cut at the rung whose span [rung, next rung) holds its last env steps
    when its stop reason is ``asha``."""
    rows: list[tuple[dict, list]] = []
    for trial in data.trials:
        curve = data.curves.get(trial["trial_id"])
        if curve is None:
            rows.append((trial, [None] * len(rungs)))
            continue
        steps = np.nan_to_num(curve["env_steps"], nan=-1.0)
        last = trial.get("last_env_steps")
        last = float(steps.max()) if last is None else float(last)
        cells: list[tuple[float, bool] | None] = []
        for k, rung in enumerate(rungs):
            reached = np.flatnonzero(steps >= rung)
            if not reached.size:
                cells.append(None)
                continue
            upper = rungs[k + 1] if k + 1 < len(rungs) else math.inf
            cut = trial.get("stop_reason") == "asha" and rung <= last < upper
            cells.append((float(curve["metric"][reached[0]]), cut))
        rows.append((trial, cells))
    return rows


def build_figures(
    data: SweepData, importance: Importances, confirmed: Sequence[ConfirmedConfig] = ()
) -> dict[str, object]:
    """The page's figures by file-name key, only those with something to draw."""
    colours = figures.trial_colours([t["trial_id"] for t in data.trials])
    built: dict[str, object] = {}
    if confirmed:
        built["performance-profile"] = figures.performance_profiles(
            confirmed, metric=data.sweep["metric"]
        )
    search = data.search_only()
    if data.curves:
        built["learning-curves"] = figures.learning_curves(data, colours)
        built["learning-curves-per-trial"] = figures.learning_curves_per_trial(data, colours)
        built["flag-rate"] = figures.flag_rate(data, colours)
        built["training-health"] = figures.training_health(data, colours)
    if search.sweep["search_space"] and any(t.get("params") for t in search.trials):
        if any(t.get("best_metric") is not None for t in search.trials):
            built["search-parameters"] = figures.search_scatter(search, colours)
        built["search-parallel"] = figures.parallel_coordinates(search)
    if importance.values:
        built["search-importances"] = figures.importances(importance)
    if data.ends.counts:
        built["episode-ends"] = figures.episode_ends(data)
    if data.bc_iterations:
        built["imitation"] = figures.imitation(data)
    if _is_population(data.sweep) and data.curves:
        built["lineage"] = figures.pbt_lineage(data, colours)
        built["hyperparameter-paths"] = figures.hyperparameter_paths(data, colours)
    return built


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_FIGURE_DPI)
    return buffer.getvalue()


def _e(value: object) -> str:
    return html.escape("-" if value is None else str(value))


def _num(value: object, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _image(key: str, png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="fig-{key}"><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(alt)}</figcaption></figure>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _summary(data: SweepData, generated: str) -> str:
    sweep = data.sweep
    reasons = Counter(t.get("stop_reason") or "running" for t in data.trials)
    counts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none yet"
    finished = sweep["finished_at"]
    parts = [
        f"<h1>sweep {_e(sweep['name'])}</h1>",
        '<table class="facts">',
        f"<tr><th>algorithm</th><td>{_e(sweep['algo'])}</td></tr>",
        f"<tr><th>status</th><td>{_e(sweep['status'])}</td></tr>",
        f"<tr><th>metric</th><td>{_e(sweep['metric'])} ({_e(sweep['mode'])})</td></tr>",
        f"<tr><th>trials</th><td>{len(data.trials)}: {_e(counts)}</td></tr>",
        f"<tr><th>started</th><td>{_e(sweep['started_at'])}</td></tr>",
        f"<tr><th>finished</th><td>{_e(finished or 'not yet')}</td></tr>",
        f"<tr><th>search space</th><td><code>{_e(json.dumps(sweep['search_space']))}</code>"
        "</td></tr>",
        f"<tr><th>scheduler</th><td><code>{_e(json.dumps(sweep['scheduler']))}</code></td></tr>",
        f"<tr><th>generated</th><td>{_e(generated)}</td></tr>",
        "</table>",
    ]
    if sweep["status"] == "running":
        parts.append(
            _note(
                f"The sweep is still running: this page shows what was recorded by "
                f"{generated} and reloads every {RUNNING_REFRESH_S} s."
            )
        )
    if not data.trials:
        parts.append(_note("No trial has been recorded yet."))
    errored = [t for t in data.trials if t.get("stop_reason") == "error" or t.get("error")]
    if errored:
        every = len(errored) == len(data.trials)
        heading = (
            f"All {len(errored)} trials errored"
            if every
            else f"{len(errored)} of {len(data.trials)} trials errored"
        )
        items = "".join(
            f"<li><b>{_e(t['trial_id'])}</b>: <code>{_e(_error_line(t.get('error')))}</code></li>"
            for t in errored
        )
        parts.append(
            f'<div class="{"alert" if every else "warn"}"><h3>{_e(heading)}</h3>'
            f"<ul>{items}</ul></div>"
        )
    return "\n".join(parts)


def _error_line(error: str | None) -> str:
    """The last line of a traceback names the exception; the whole text is in trials.error."""
    lines = (error or "").strip().splitlines()
    return lines[-1] if lines else "no error text recorded"


def _leaderboard_table(data: SweepData) -> str:
    rows, metric = data.leaderboard, data.sweep["metric"]
    params = "params now (after exploits)" if _is_population(data.sweep) else "params"
    head = (
        f"<tr><th>#</th><th>trial</th><th>{params}</th>"
        f"<th>{_e(metric)}</th><th>best return</th><th>best x_pos</th><th>flags</th>"
        "<th>episodes</th><th>stop reason</th><th>env steps</th><th>best checkpoint</th>"
        "<th>eval x_pos</th><th>eval flag rate</th></tr>"
    )
    body = "".join(
        f"<tr><td>{i}</td><td>{_e(r['trial_id'])}</td><td>{_e(params_text(r['params']))}</td>"
        f"<td>{_num(r['best_metric'], '.2f')}</td><td>{_num(r['best_return'], '.2f')}</td>"
        f"<td>{_num(r['best_x_pos'], 'd')}</td><td>{r['flags']}</td><td>{r['episodes']:,}</td>"
        f'<td class="reason-{_e(r["stop_reason"] or "running")}">'
        f"{_e(r['stop_reason'] or 'running')}</td>"
        f"<td>{_num(r['last_env_steps'], ',d')}</td><td><code>{_e(r['best_checkpoint'])}</code>"
        f"</td><td>{_num(r['eval_x_pos'], ',.0f')}</td><td>{_num(r['eval_flag_rate'], '.0%')}"
        "</td></tr>"
        for i, r in enumerate(rows, 1)
    )
    return f'<table class="data" id="leaderboard-table">{head}{body}</table>'


def _evaluation_section(data: SweepData) -> str:
    """The best checkpoint's evaluation episodes and its best episode's video, inlined."""
    rows = data.evaluations
    if not rows:
        return _note("No evaluation yet: the sweep evaluates its best checkpoint when it ends.")
    head = (
        "<tr><th>policy</th><th>episode</th><th>task</th><th>return</th><th>x_pos</th>"
        "<th>flag</th><th>length</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r['policy'])}</td><td>{r['episode']}</td><td>{_e(r['task_id'])}</td>"
        f"<td>{_num(r['episode_return'], '.2f')}</td><td>{_num(r['x_pos'], 'd')}</td>"
        f"<td>{'yes' if r['flag_get'] else 'no'}</td><td>{_num(r['length'], 'd')}</td></tr>"
        for r in rows
    )
    first = rows[0]
    parts = [
        _note(
            f"Trial {first['trial_id']}, checkpoint {first['checkpoint']}. Protocol: "
            + "; ".join(
                dict.fromkeys(r["protocol"] or "greedy, no randomised starts" for r in rows)
            )
            + "."
        ),
        f'<table class="data" id="evaluation-table">{head}{body}</table>',
    ]
    for video in dict.fromkeys(r["video"] for r in rows if r["video"]):
        path = Path(video)
        if path.is_file():
            mp4 = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><video controls muted loop width="512" '
                f'src="data:video/mp4;base64,{mp4}"></video>'
                f"<figcaption>best episode: {_e(path.name)}</figcaption></figure>"
            )
    return "".join(parts)


def _confirmed_section(
    confirmed: Sequence[ConfirmedConfig], data: SweepData, pngs: Mapping[str, bytes]
) -> str:
    """Confirmed configs first: IQM [95 % CI] over N seeds, and the performance profiles."""
    if not confirmed:
        return _note(
            "No confirmed config yet: the sweep's confirm stage (--confirm-top K "
            "--confirm-seeds N, or python -m sweeps.confirm NAME) re-runs the best configs "
            "over fresh seeds."
        )
    head = (
        "<tr><th>#</th><th>config of</th><th>params</th><th>N</th>"
        f"<th>final {_e(data.sweep['metric'])}<br>IQM [95 % CI]</th>"
        "<th>eval flag rate<br>IQM [95 % CI]</th>"
        "<th>P(#1 &gt; this)</th><th>seeds</th></tr>"
    )
    body = "".join(
        f"<tr><td>{i}</td><td>{_e(c.repeats)}</td><td>{_e(params_text(c.params))}</td>"
        f"<td>{c.n}</td><td>{_e(interval_text(c.final))}</td>"
        f"<td>{_e(interval_text(c.flag_rate, percent=True))}</td>"
        f"<td>{_num(c.probability_of_improvement, '.2f')}</td>"
        f"<td>{_e(', '.join(str(s) for s in c.seeds))}</td></tr>"
        for i, c in enumerate(confirmed, 1)
    )
    return "".join(
        [
            _note(f"Final metric: {FINAL_METRIC}. Intervals: 95 % percentile bootstrap."),
            f'<table class="data" id="confirmed-table">{head}{body}</table>',
            _image(
                "performance-profile",
                pngs.get("performance-profile"),
                "performance profiles: fraction of a config's runs scoring above each value",
            ),
        ]
    )


def _asha_section(data: SweepData) -> str:
    data = data.search_only()
    schedule = Schedule.from_record(data.sweep["scheduler"])
    rungs = schedule.asha_rungs() if schedule is not None else []
    if not rungs:
        return _note(
            "This sweep has no ASHA scheduler on record (sweeps.scheduler has no "
            "grace_period / reduction_factor / max_t)."
        )
    rows = _rung_cells(data, rungs)
    reached = [sum(1 for _, cells in rows if cells[k] is not None) for k in range(len(rungs))]
    cut = [sum(1 for _, cells in rows if cells[k] and cells[k][1]) for k in range(len(rungs))]
    head = (
        "<tr><th>trial</th><th>stop reason</th>"
        + "".join(
            f"<th>rung {k}: {r:,} steps<br><small>{reached[k]} reached, {cut[k]} cut</small></th>"
            for k, r in enumerate(rungs)
        )
        + "</tr>"
    )
    body = []
    for trial, cells in rows:
        tds = "".join(
            '<td class="absent">not reached</td>'
            if cell is None
            else (
                f'<td class="cut">{_num(cell[0])} ✂ cut</td>'
                if cell[1]
                else f"<td>{_num(cell[0])}</td>"
            )
            for cell in cells
        )
        body.append(
            f"<tr><td>{_e(trial['trial_id'])}</td>"
            f"<td>{_e(trial.get('stop_reason') or 'running')}</td>{tds}</tr>"
        )
    scheduler = data.sweep["scheduler"]
    return (
        f"<p>Rungs at grace_period {scheduler['grace_period']:,} × reduction_factor "
        f"{scheduler['reduction_factor']}<sup>k</sup> env steps up to max_t "
        f"{scheduler['max_t']:,}. A cell is the trial's {_e(data.sweep['metric'])} at its first "
        "iteration at or past the rung (what ASHA compared); ✂ marks the rung where ASHA stopped "
        "it (stop reason asha, last env steps between that rung and the next).</p>"
        f'<table class="data" id="asha-table">{head}{"".join(body)}</table>'
    )


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1450px; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 2px solid #ddd; margin-top: 2em; }
nav a { margin-right: 1em; }
table.data, table.facts { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
table.data th, table.data td, table.facts th, table.facts td {
  border: 1px solid #ccc; padding: 3px 7px; text-align: right; vertical-align: top; }
table.facts th { text-align: left; background: #f4f4f4; } table.facts td { text-align: left; }
table.data th { background: #f0f3f8; position: sticky; top: 0; }
table.data tr:nth-child(even) td { background: #fafafa; }
td.cut { background: #ffe0c2 !important; font-weight: bold; } td.absent { color: #aaa; }
td.reason-error { color: #b00; } td.reason-asha { color: #c60; } td.reason-collapse { color: #a05; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; } .note { color: #555; font-style: italic; }
.alert { background: #fde2e2; border: 1px solid #e99; padding: .4em 1em; }
.warn { background: #fff4d6; border: 1px solid #e8c766; padding: .4em 1em; }
code { font-size: 12px; word-break: break-all; }
"""


def _is_population(sweep: Mapping) -> bool:
    schedule = Schedule.from_record(sweep["scheduler"])
    return schedule is not None and schedule.population


def _population_section(data: SweepData, pngs: Mapping[str, bytes]) -> str:
    """PBT's lineage and each member's hyperparameter path; a line for other sweeps."""
    if not _is_population(data.sweep):
        return _note("Not a population sweep: its trials were scheduled by ASHA.")
    if "lineage" not in pngs:
        return _note("No member has reported yet.")
    exploits = [e for e in data.lineage if e["kind"] == "exploit"]
    return "".join(
        [
            _note(
                f"{len(exploits)} exploits: a member in the bottom quantile copied a top member's "
                "checkpoint (arrow from the donor's point to the member's) and explored new "
                "values; collapses are recorded (x), not stopped, and left for exploit to replace."
            ),
            _image("lineage", pngs["lineage"], "members' metric over env steps, with exploits"),
            _image(
                "hyperparameter-paths",
                pngs["hyperparameter-paths"],
                "each member's searched values over env steps",
            ),
        ]
    )


def _curves_section(data: SweepData, pngs: Mapping[str, bytes]) -> str:
    if not data.curves:
        return _note(_NOTHING_YET)
    return "".join(
        [
            _note(
                "Stop markers by stop reason at each trial's last iteration; ★ marks the "
                "iteration whose metric equals the trial's best metric (matched by value); "
                "for a collapse the dotted line shows the peak it fell from. The best "
                "checkpoint Tune kept is named in each panel's title and the leaderboard."
            ),
            _image(
                "learning-curves",
                pngs.get("learning-curves"),
                f"{data.sweep['metric']} and x_pos against env steps, all trials",
            ),
            _image(
                "learning-curves-per-trial",
                pngs.get("learning-curves-per-trial"),
                "small multiples, one panel per trial, best first",
            ),
        ]
    )


def _imitation_section(data: SweepData, pngs: Mapping[str, bytes]) -> str:
    """The BC stage: what it cloned, how BC went, and the trials from each clone."""
    if not data.demonstrations:
        return _note("No BC stage: every trial started from scratch.")
    flags = sum(bool(d["flag_get"]) for d in data.demonstrations)
    rows = "".join(
        f"<tr><td>{_e(d['source'])}</td><td>{_e(d['task_id'])}</td><td>{d['steps']:,}</td>"
        f"<td>{_num(d['episode_return'])}</td><td>{_e(d['x_pos'])}</td>"
        f"<td>{'yes' if d['flag_get'] else 'no'}</td></tr>"
        for d in data.demonstrations
    )
    return "".join(
        [
            _note(
                f"RLlib's BC cloned {len(data.demonstrations)} demonstration episodes "
                f"({sum(d['steps'] for d in data.demonstrations):,} agent steps, {flags} reached "
                f"the flag) for {len(data.bc_iterations)} iterations before any trial. BC costs "
                "no env steps: each trial's curve starts at env step 0 from the clone its "
                "bc_iterations names (0: from scratch, the sweep's own pure-RL control)."
            ),
            _image("imitation", pngs.get("imitation"), "BC loss, then PPO curves by BC budget"),
            '<table id="demonstrations-table"><tr><th>source</th><th>task</th><th>steps</th>'
            f"<th>return</th><th>furthest x_pos</th><th>flag</th></tr>{rows}</table>",
        ]
    )


def _search_section(pngs: Mapping[str, bytes], importance: Importances) -> str:
    if "search-parallel" not in pngs:
        return _note("No trial with searched parameters yet.")
    return "".join(
        [
            _image(
                "search-parameters",
                pngs.get("search-parameters"),
                "each searched parameter against the trial's best metric",
            ),
            _image("search-parallel", pngs.get("search-parallel"), "parallel coordinates"),
            _image(
                "search-importances",
                pngs.get("search-importances"),
                f"Optuna parameter importances, {importance.note}",
            )
            if importance.values
            else _note(f"No parameter importances: {importance.note}."),
        ]
    )


def _episodes_section(pngs: Mapping[str, bytes]) -> str:
    return "".join(
        [
            _note(
                "Ending rule: flag = flag_get; time-out = the game clock reached 0 "
                "(time_left = 0) or the env's max_episode_steps cut the episode; death = "
                "everything else."
            ),
            _image(
                "episode-ends",
                pngs.get("episode-ends"),
                "per trial: histogram of the x position where episodes ended",
            )
            if "episode-ends" in pngs
            else _note("No episode has been recorded yet."),
            _image("flag-rate", pngs.get("flag-rate"), "flag rate against env steps"),
        ]
    )


def _health_section(data: SweepData, pngs: Mapping[str, bytes]) -> str:
    if not data.curves:
        return _note(_NOTHING_YET)
    return _image(
        "training-health",
        pngs.get("training-health"),
        "entropy, KL, total loss and value loss (result learners/default_policy/vf_loss)",
    )


_NOTHING_YET = "nothing to draw yet: no iteration has been recorded"


def render_html(
    data: SweepData,
    *,
    pngs: Mapping[str, bytes],
    importance: Importances,
    generated: str,
    confirmed: Sequence[ConfirmedConfig] = (),
) -> str:
    """The page: summary, confirmed configs, leaderboard, the best agent evaluated, learning
    curves, behaviour cloning, search, population, ASHA, episode ends, health."""
    evaluation = _evaluation_section(data) if data.evaluations else _note("No evaluation yet.")
    sections = [
        ("confirmed", "Confirmed configs", _confirmed_section(confirmed, data, pngs)),
        ("leaderboard", "Leaderboard", _leaderboard_table(data)),
        ("evaluation", "The best agent, evaluated", evaluation),
        ("curves", "Learning curves", _curves_section(data, pngs)),
        ("imitation", "Behaviour cloning", _imitation_section(data, pngs)),
        ("search", "Search", _search_section(pngs, importance)),
        ("population", "Population (PBT)", _population_section(data, pngs)),
        ("asha", "ASHA rungs", _asha_section(data)),
        ("episodes", "Where episodes end", _episodes_section(pngs)),
        ("health", "Training health", _health_section(data, pngs)),
    ]
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections)
    body = "\n".join(
        f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>'
        for key, title, content in sections
    )
    refresh = (
        f'<meta http-equiv="refresh" content="{RUNNING_REFRESH_S}">'
        if data.sweep["status"] == "running"
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"{refresh}<title>sweep {_e(data.sweep['name'])}</title><style>{_CSS}</style></head>"
        f"<body>{_summary(data, generated)}<nav>{nav}</nav>\n{body}</body></html>\n"
    )


def _file_stem(name: str) -> str:
    """A sweep name as a file name (names may hold characters a path cannot)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "sweep"


def _write_atomically(path: Path, content: bytes) -> None:
    """Write via a temporary file and rename, so a reader (a browser reloading a running
    sweep's page) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise ReportError(f"cannot write the report to {out_dir}: {exc}") from None


def write_report(db_url: str, name: str, out_dir: Path) -> Path:
    """Write ``<out_dir>/<name>.html`` and ``<out_dir>/<name>-<figure>.png``; return the HTML path.

    Reads whatever the database holds now (one snapshot), so it works while the sweep runs.
    Raises ReportError (one line) for an unknown sweep, a database without our schema, or an
    unwritable ``out_dir``.
    """
    out_dir = Path(out_dir)
    data = read_sweep(db_url, name)  # an unknown name fails before any folder is made
    _check_writable(out_dir)
    importance = study_importances(db_url, f"mario-sweeps/{name}")
    confirmed = summarise_confirmed(data.confirm_runs, mode=data.sweep["mode"])
    pngs = {key: _png(figure) for key, figure in build_figures(data, importance, confirmed).items()}
    page = render_html(
        data,
        confirmed=confirmed,
        pngs=pngs,
        importance=importance,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    stem = _file_stem(name)
    try:
        for key, png in pngs.items():
            _write_atomically(out_dir / f"{stem}-{key}.png", png)
        path = out_dir / f"{stem}.html"
        _write_atomically(path, page.encode("utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot write the report to {out_dir}: {exc}") from None
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m sweeps.report NAME [--out DIR] [--db-url URL]``: write the report, print its
    path; bad input is one ``error:`` line on stderr and exit code 2."""
    parser = OneLineParser(
        prog="python -m sweeps.report",
        allow_abbrev=False,
        description="Write a sweep's self-contained HTML report (and a PNG per figure).",
    )
    parser.add_argument("name", help="the sweep's name (sweeps.name)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the report (default: <state dir>/reports/NAME)",
    )
    add_db_url_flag(parser)
    try:
        args = parser.parse_args(argv)
        out_dir = args.out or default_state_dir() / "reports" / _file_stem(args.name)
        print(write_report(db_url_of(args), args.name, out_dir))
    except (ReportError, StoreError, SweepError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
