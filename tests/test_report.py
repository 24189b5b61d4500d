"""The HTML sweep report against a real PostgreSQL, with rows written through the results store.

A synthetic sweep holds one trial per stop reason (completed, asha, collapse, error, interrupted)
and one still running, each with iterations and episodes as the PostgresCallback writes them, and
an Optuna study beside it. Figures are checked through their artists' gids, the page through an
HTML parser and headless Chromium.
"""

import html.parser
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import optuna
import psycopg2
import pytest

from callbacks.store import ResultsStore, prepare_database, sqlalchemy_url
from callbacks.store.tables import iteration_row
from sweeps import report
from sweeps.leaderboard import leaderboard
from sweeps.queries import read_sweep, study_importances
from sweeps.schedule import Schedule
from tests.databases import create_database
from tests.helpers import TRIAL_FIGURES, gids, trials_in

pytestmark = pytest.mark.xdist_group("report")  # one worker builds its module fixtures

REPO = Path(__file__).resolve().parents[1]
METRIC = "mario/x_pos_smoothed"
SEARCH_SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "entropy_coeff": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
}
SCHEDULER = {
    "type": "ASHA",
    "time_attr": "num_env_steps_sampled_lifetime",
    "max_t": 4_000,
    "grace_period": 500,
    "reduction_factor": 2,
}
STEPS_PER_ITERATION = 100
# stop reason -> (iterations written, trial status); None is a trial still running.
TRIAL_PLAN = {
    "completed": (40, "TERMINATED"),
    "asha": (10, "TERMINATED"),  # cut at the 1,000-step rung
    "collapse": (30, "TERMINATED"),
    "error": (5, "ERROR"),
    "interrupted": (25, "TERMINATED"),
    None: (15, "RUNNING"),
}


# -- synthetic sweeps, written through the store --------------------------------------------


def new_database(postgres_server) -> str:
    return create_database(postgres_server, prefix="r")


def metric_curve(reason: str | None, iterations: int, seed: int) -> np.ndarray:
    """Rising curves; a collapse rises to a peak at two thirds, then falls to a third of it."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, iterations + 1)
    curve = 200 + 25 * seed + 600 * (1 - np.exp(-t / 12)) + rng.normal(0, 5, iterations)
    if reason == "collapse":
        peak = 2 * iterations // 3
        curve[peak:] = curve[peak - 1] * np.linspace(0.9, 0.3, iterations - peak)
    return curve


def iteration_result(iteration: int, metric: float, episodes: int, flags: int) -> dict:
    return {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": float(STEPS_PER_ITERATION * iteration),
        "time_total_s": 2.0 * iteration,
        "learners": {
            "default_policy": {
                "total_loss": 0.5 / iteration,
                "entropy": 2.0 - iteration / 50,
                "mean_kl_loss": 0.01 + 0.001 * iteration,
                "vf_loss": 1.0 / iteration,
            }
        },
        METRIC: metric,
        "mario/return_smoothed": metric / 10,
        "mario/x_pos_mean": metric * 0.9,
        "mario/x_pos_max": metric * 1.4,
        "mario/flag_rate": flags / episodes if episodes else None,
        "mario/episodes": episodes,
    }


def episode(trial_id: str, iteration: int, k: int, *, x_pos: int, ending: str) -> dict:
    return {
        "episode_id": f"{trial_id}-{iteration}-{k}",
        "training_iteration": iteration,
        "env_runner": 1,
        "env_index": k,
        "episode_return": x_pos / 10,
        "length": 400,
        "x_pos": x_pos,
        "x_pos_max": x_pos + 20,
        "flag_get": ending == "flag",
        "score": 100,
        "coins": 1,
        "time_left": 0 if ending == "time-out" else 120,
        "world": 1,
        "stage": 1,
        "life": 2,
        "status": "small",
        "game": "SuperMarioBros",
        "task_id": "SuperMarioBros-1-1-v0",
    }


def write_trial(
    store: ResultsStore,
    trial_id: str,
    *,
    reason: str | None,
    iterations: int,
    status: str,
    seed: int,
    episodes_per_iteration: int = 3,
) -> dict:
    """One trial's rows; returns what a test needs to know about it (params, best metric)."""
    rng = np.random.default_rng(seed)
    params = {
        "lr": float(10 ** rng.uniform(-5, -3)),
        "entropy_coeff": float(10 ** rng.uniform(-4, -1)),
    }
    store.upsert_trial(trial_id, params=params, status=status)
    curve = metric_curve(reason, iterations, seed)
    for i, value in enumerate(curve, start=1):
        endings = rng.choice(
            ["death", "flag", "time-out"], episodes_per_iteration, p=[0.7, 0.2, 0.1]
        )
        records = [
            episode(trial_id, i, k, x_pos=int(rng.uniform(100, 3000)), ending=str(ending))
            for k, ending in enumerate(endings)
        ]
        flags = sum(ending == "flag" for ending in endings)
        row = iteration_row(iteration_result(i, float(value), len(records), flags), metric=METRIC)
        store.write_iteration(trial_id, row)
        store.write_episodes(trial_id, records)
    best = float(curve.max())
    store.upsert_trial(
        trial_id,
        stop_reason=reason,
        best_metric=best,
        best_checkpoint=f"/exp/PPO_{trial_id}/checkpoint_00000{seed % 10}",
        last_env_steps=STEPS_PER_ITERATION * iterations,
        error="Traceback (most recent call last):\nRuntimeError: env runner died"
        if reason == "error"
        else None,
    )
    return {"trial_id": trial_id, "params": params, "best_metric": best, "reason": reason}


def start(url: str, tmp_path: Path, name: str) -> ResultsStore:
    prepare_database(url)
    store = ResultsStore(url, spill_dir=tmp_path / f"spill-{name}", retry_interval_s=0)
    store.start_sweep(
        name=name,
        algo="PPO",
        search_space=SEARCH_SPACE,
        metric=METRIC,
        mode="max",
        scheduler=SCHEDULER,
    )
    return store


def make_study(url: str, name: str, trials: list[dict], *, complete: int) -> None:
    """The sweep's Optuna study: ``complete`` trials told COMPLETE, the rest PRUNED."""
    storage = optuna.storages.RDBStorage(sqlalchemy_url(url))
    study = optuna.create_study(
        study_name=f"mario-sweeps/{name}", storage=storage, direction="maximize"
    )
    distributions = {
        "lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
        "entropy_coeff": optuna.distributions.FloatDistribution(1e-4, 0.1, log=True),
    }
    for k, trial in enumerate(trials):
        state = optuna.trial.TrialState.COMPLETE if k < complete else optuna.trial.TrialState.PRUNED
        study.add_trial(
            optuna.trial.create_trial(
                params=trial["params"],
                distributions=distributions,
                value=trial["best_metric"] if state == optuna.trial.TrialState.COMPLETE else None,
                state=state,
            )
        )
    storage.engine.dispose()


@pytest.fixture(scope="module")
def sweep(postgres_server, tmp_path_factory):
    """A running sweep with one trial per stop reason plus a running one, and its study."""
    url = new_database(postgres_server)
    tmp_path = tmp_path_factory.mktemp("report")
    store = start(url, tmp_path, "mixed")
    trials = [
        write_trial(
            store, f"t{k}_{reason or 'running'}", reason=reason, iterations=n, status=status, seed=k
        )
        for k, (reason, (n, status)) in enumerate(TRIAL_PLAN.items())
    ]
    assert store.close() == 0
    make_study(url, "mixed", trials, complete=4)
    return {"url": url, "name": "mixed", "trials": trials, "tmp": tmp_path}


@pytest.fixture(scope="module")
def page(sweep):
    path = report.write_report(sweep["url"], sweep["name"], sweep["tmp"] / "out")
    return {"path": path, "html": path.read_text(encoding="utf-8")}


@pytest.fixture(scope="module")
def built(sweep):
    data = read_sweep(sweep["url"], sweep["name"])
    importance = study_importances(sweep["url"], f"mario-sweeps/{sweep['name']}")
    return data, report.build_figures(data, importance)


# -- figures -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(TRIAL_FIGURES))
def test_each_figure_has_data_for_every_trial(sweep, built, key):
    _, figs = built
    every = {t["trial_id"] for t in sweep["trials"]}
    for kind in TRIAL_FIGURES[key]:
        assert trials_in(figs[key], kind) == every, (key, kind)


def test_curve_lines_hold_every_stored_iteration(sweep, built):
    _, figs = built
    lines = {a.get_gid(): a for a in figs["learning-curves"].findobj() if a.get_gid()}
    for (reason, (iterations, _)), trial in zip(TRIAL_PLAN.items(), sweep["trials"], strict=True):
        x, y = lines[f"metric:{trial['trial_id']}"].get_data()
        assert len(x) == iterations, reason
        assert x[-1] == STEPS_PER_ITERATION * iterations


@pytest.mark.parametrize("key", ["learning-curves", "learning-curves-per-trial"])
def test_stop_markers_match_the_stored_stop_reasons(sweep, built, key):
    _, figs = built
    stops = {g.split(":")[1]: g.split(":")[2] for g in gids(figs[key]) if g.startswith("stop:")}
    assert stops == {t["trial_id"]: t["reason"] or "running" for t in sweep["trials"]}


def test_the_best_metric_star_sits_on_the_iteration_with_that_metric(sweep, built):
    _, figs = built
    artists = {a.get_gid(): a for a in figs["learning-curves"].findobj() if a.get_gid()}
    for trial in sweep["trials"]:
        _, y = artists[f"best:{trial['trial_id']}"].get_data()
        assert y[0] == pytest.approx(trial["best_metric"])


def test_only_the_collapsed_trial_shows_the_peak_it_fell_from(sweep, built):
    _, figs = built
    collapsed = [t["trial_id"] for t in sweep["trials"] if t["reason"] == "collapse"]
    assert sorted(trials_in(figs["learning-curves"], "peak")) == collapsed


def test_search_axes_are_logarithmic_where_the_space_is_searched_log(built):
    _, figs = built
    axes = [ax for ax in figs["search-parameters"].axes if ax.get_visible()]
    assert [ax.get_xscale() for ax in axes] == ["log", "log"]


def test_episode_histograms_count_every_stored_episode_by_its_ending(sweep, built):
    data, figs = built
    stacks = [a for a in figs["episode-ends"].findobj() if (a.get_gid() or "").startswith("ends:")]
    heights: dict[str, float] = {}
    for stack in stacks:  # one filled step patch per trial and ending, on the ones below
        trial_id = stack.get_gid().split(":")[1]
        values, _, baseline = stack.get_data()
        heights[trial_id] = heights.get(trial_id, 0) + float((values - baseline).sum())
    assert heights == {tid: float(n) for tid, n in data.episodes.items()}
    assert len(data.episodes) == len(sweep["trials"])


def test_the_reports_sql_endings_are_the_one_definition_the_benchmark_uses(postgres_url):
    """``sweeps.queries`` bins endings in SQL, ``benchmarks/learning.py`` calls
    ``callbacks.records.episode_ending``: a step-capped episode is a time-out in both."""
    from callbacks.records import episode_ending
    from sweeps.queries import ENDING_SQL

    cases = [(True, 0, 10), (False, 0, 100), (False, 250, 4500), (False, 250, 100)]
    values = ", ".join(f"({f}, {t}, {n})" for f, t, n in cases)
    for cap in (4500, None):
        sql = f"SELECT {ENDING_SQL} FROM (VALUES {values}) AS e(flag_get, time_left, length)"
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
            cur.execute(sql, {"max_steps": cap})
            in_sql = [how for (how,) in cur.fetchall()]
        in_python = [
            episode_ending(flag_get=f, time_left=t, length=n, max_episode_steps=cap)
            for f, t, n in cases
        ]
        assert in_sql == in_python
    assert in_python == ["flag", "time-out", "death", "death"]  # uncapped: the clock alone


# -- the ASHA table ---------------------------------------------------------------------------


@pytest.mark.parametrize("grace,rf,max_t", [(500, 2, 4_000), (250, 2, 1_000), (50_000, 3, 10**6)])
def test_asha_rungs_are_the_milestones_of_tunes_own_bracket(grace, rf, max_t):
    from ray.tune.schedulers.async_hyperband import _Bracket

    tune_rungs = sorted(m for m, _ in _Bracket(grace, max_t, rf, 0)._rungs)
    recorded = {"type": "ASHA", "grace_period": grace, "reduction_factor": rf, "max_t": max_t}
    assert Schedule.from_record(recorded).asha_rungs() == tune_rungs


def test_asha_table_shows_each_trials_metric_at_each_rung_and_who_was_cut(sweep, built):
    data, _ = built
    cells = {trial["trial_id"]: row for trial, row in report._rung_cells(data, [500, 1000, 2000])}
    cut = next(t for t in sweep["trials"] if t["reason"] == "asha")["trial_id"]
    values = data.curves[cut]["metric"]
    # 100 steps an iteration: rung 500 is iteration 5, rung 1,000 iteration 10 (the last one).
    assert cells[cut] == [(values[4], False), (values[9], True), None]
    running = next(t for t in sweep["trials"] if t["reason"] is None)["trial_id"]
    assert [cell is not None and not cell[1] for cell in cells[running]] == [True, True, False]


def test_the_asha_section_names_the_cut_trial_at_its_rung(sweep, page):
    table = page["html"].split('id="asha-table"')[1].split("</table>")[0]
    cut = next(t for t in sweep["trials"] if t["reason"] == "asha")["trial_id"]
    row = next(r for r in table.split("<tr>") if f"<td>{cut}</td>" in r)
    assert row.count('class="cut"') == 1
    assert "1 cut" in table


# -- the page --------------------------------------------------------------------------------


class Links(html.parser.HTMLParser):
    """Every src/href of a script, img, link, iframe, source, embed or object on the page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "data", "srcset") and value is not None:
                self.urls.append((tag, value))


def test_the_page_has_no_external_url_in_any_script_image_or_link(page):
    parser = Links()
    parser.feed(page["html"])
    tags = {tag for tag, _ in parser.urls}
    assert "img" in tags
    for tag, url in parser.urls:
        assert url.startswith("data:image/png;base64,") or url.startswith("#"), (tag, url[:80])
    assert "http://" not in page["html"] and "https://" not in page["html"]


def test_every_figure_is_inlined_and_written_as_a_png(page, built):
    _, figs = built
    out = page["path"].parent
    for key in figs:
        png = out / f"mixed-{key}.png"
        assert iio.imread(png).shape[0] > 100
        assert f'id="fig-{key}"' in page["html"]


def test_the_leaderboard_table_lists_every_trial_best_first(sweep, page):
    table = page["html"].split('id="leaderboard-table"')[1].split("</table>")[0]
    order = sorted(sweep["trials"], key=lambda t: -t["best_metric"])
    positions = [table.index(f"<td>{t['trial_id']}</td>") for t in order]
    assert positions == sorted(positions)


def test_a_running_sweep_says_so_and_reloads_itself(page):
    assert 'http-equiv="refresh"' in page["html"]
    assert "still running" in page["html"]


def test_importances_are_shown_once_four_trials_are_complete(sweep, page):
    importance = study_importances(sweep["url"], "mario-sweeps/mixed")
    assert set(importance.values) == set(SEARCH_SPACE)
    assert math.isclose(sum(importance.values.values()), 1.0, rel_tol=1e-6)
    assert 'id="fig-search-importances"' in page["html"]


def test_too_few_complete_trials_for_importances_is_said_on_the_page(postgres_server, tmp_path):
    url = new_database(postgres_server)
    store = start(url, tmp_path, "few")
    trials = [
        write_trial(store, f"f{k}", reason="completed", iterations=3, status="TERMINATED", seed=k)
        for k in range(3)
    ]
    store.close()
    make_study(url, "few", trials, complete=3)
    text = report.write_report(url, "few", tmp_path / "out").read_text()
    assert "No parameter importances: 3 COMPLETE trial(s)" in text
    assert "fig-search-importances" not in text


def test_a_missing_study_is_said_on_the_page_and_nothing_is_written(postgres_server, tmp_path):
    url = new_database(postgres_server)
    store = start(url, tmp_path, "nostudy")
    write_trial(store, "n0", reason="completed", iterations=3, status="TERMINATED", seed=0)
    store.close()
    text = report.write_report(url, "nostudy", tmp_path / "out").read_text()
    assert "no Optuna study named &#x27;mario-sweeps/nostudy&#x27;" in text
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:  # the report opened no RDBStorage: Optuna's tables stay absent
        cur.execute("SELECT to_regclass('public.studies')")
        assert cur.fetchone()[0] is None
    conn.close()


# -- sizes and failures -------------------------------------------------------------------------


def test_a_one_trial_sweep_renders(postgres_server, tmp_path):
    url = new_database(postgres_server)
    store = start(url, tmp_path, "one")
    write_trial(store, "solo", reason="completed", iterations=8, status="TERMINATED", seed=1)
    store.close()
    data = read_sweep(url, "one")
    figs = report.build_figures(data, study_importances(url, "mario-sweeps/one"))
    assert trials_in(figs["learning-curves-per-trial"], "metric") == {"solo"}
    assert "solo" in report.write_report(url, "one", tmp_path / "out").read_text()


@pytest.mark.slow  # 100 trials of rows written and drawn: ~40 s
def test_a_hundred_trial_sweep_renders_every_trial(postgres_server, tmp_path):
    url = new_database(postgres_server)
    store = start(url, tmp_path, "hundred")
    reasons = ["completed", "asha", "collapse", "error", "interrupted"]
    ids = [f"h{k:03d}" for k in range(100)]
    for k, trial_id in enumerate(ids):
        reason = reasons[k % len(reasons)]
        iterations = {"asha": 5, "error": 2}.get(reason, 12)
        write_trial(
            store,
            trial_id,
            reason=reason,
            iterations=iterations,
            status="TERMINATED",
            seed=k,
            episodes_per_iteration=1,
        )
    store.close()
    data = read_sweep(url, "hundred")
    figs = report.build_figures(data, study_importances(url, "mario-sweeps/hundred"))
    for key, kinds in TRIAL_FIGURES.items():
        assert trials_in(figs[key], kinds[0]) == set(ids), key
    text = report.write_report(url, "hundred", tmp_path / "out").read_text()
    assert all(f"<td>{trial_id}</td>" in text for trial_id in ids)


def test_a_sweep_whose_trials_all_errored_is_a_clear_page(postgres_server, tmp_path):
    url = new_database(postgres_server)
    store = start(url, tmp_path, "broken")
    for k in range(3):
        store.upsert_trial(
            f"e{k}",
            params={"lr": 1e-4, "entropy_coeff": 0.01},
            status="ERROR",
            stop_reason="error",
            error="Traceback (most recent call last):\n  ...\nValueError: bad frame skip <4>",
        )
    store.finish_sweep("failed")
    store.close()
    text = report.write_report(url, "broken", tmp_path / "out").read_text()
    assert "All 3 trials errored" in text
    assert text.count("ValueError: bad frame skip &lt;4&gt;") == 3
    assert "nothing to draw yet: no iteration has been recorded" in text
    assert "refresh" not in text


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweeps.report", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_writes_the_page_and_prints_its_path(sweep, tmp_path):
    done = run_cli("mixed", "--db-url", sweep["url"], "--out", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == tmp_path / "cli" / "mixed.html"
    assert (tmp_path / "cli" / "mixed.html").stat().st_size > 10_000


def assert_one_error_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert done.stdout == ""


def test_an_unknown_sweep_name_is_one_error_line_and_exit_2(sweep, tmp_path):
    out = tmp_path / "report"
    done = run_cli("no-such-sweep", "--db-url", sweep["url"], "--out", str(out))
    assert_one_error_line(done, "no sweep named 'no-such-sweep'", "mixed")
    assert not out.exists()  # a refused name leaves no folder behind


def test_a_database_without_our_schema_is_one_error_line_and_exit_2(fresh_db_url, tmp_path):
    done = run_cli("mixed", "--db-url", fresh_db_url, "--out", str(tmp_path))
    assert_one_error_line(done, "no table mario_sweeps.sweeps")


def test_an_unwritable_out_folder_is_one_error_line_and_exit_2(sweep, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # root ignores permission bits, not a file in the way
    done = run_cli("mixed", "--db-url", sweep["url"], "--out", str(blocker / "reports"))
    assert_one_error_line(done, "cannot write the report to", "a-file")


# -- in a real browser ------------------------------------------------------------------------

# Put first in <head>: records uncaught errors, failed loads (capture phase sees <img> errors),
# console.error calls and images that did not decode into an attribute --dump-dom prints.
ERROR_PROBE = """<script>
(function () {
  var errors = [];
  function record(text) {
    errors.push(String(text));
    document.documentElement.setAttribute("data-js-errors", JSON.stringify(errors));
  }
  window.addEventListener("error", function (e) {
    record(e.message || ("failed to load " + (e.target && (e.target.src || e.target.href))));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { record("rejection " + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    record("console.error " + Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    Array.prototype.forEach.call(document.images, function (img) {
      if (!img.complete || img.naturalWidth === 0) record("image did not decode: " + img.alt);
    });
    document.documentElement.setAttribute("data-loaded", String(document.images.length));
  });
})();
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def browse(path: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            *flags,
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def probe_errors(page_html: str, tmp_path: Path) -> tuple[list[str], str, str]:
    """(errors the probe recorded, images it saw, Chromium's stderr) for the page from disk."""
    probed = tmp_path / "probed.html"
    probed.write_text(page_html.replace("<head>", "<head>" + ERROR_PROBE, 1), encoding="utf-8")
    done = browse(probed, "--virtual-time-budget=5000", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    root = re.search(r"<html[^>]*>", done.stdout).group(0)
    assert "data-loaded" in root, done.stdout[:500]
    loaded = root.split('data-loaded="')[1].split('"')[0]
    errors = root.split('data-js-errors="')[1].split('"')[0] if "data-js-errors" in root else ""
    return (json.loads(html.unescape(errors)) if errors else []), loaded, done.stderr


def test_the_page_loads_in_headless_chromium_with_no_error(page, built, tmp_path):
    errors, images, stderr = probe_errors(page["html"], tmp_path)
    assert errors == []
    assert int(images) == len(built[1])
    assert "Uncaught" not in stderr


def test_the_error_probe_catches_a_broken_script_and_a_broken_image(page, tmp_path):
    broken = page["html"].replace(
        "</body>",
        "<script>undefinedReportFunction();</script>"
        '<img alt="broken" src="data:image/png;base64,AAAA"></body>',
    )
    errors, _, stderr = probe_errors(broken, tmp_path)
    assert any("undefinedReportFunction" in e for e in errors), errors
    assert any("broken" in e or "failed to load" in e for e in errors), errors
    assert "Uncaught ReferenceError" in stderr


def test_a_screenshot_of_the_page_is_not_blank(page, tmp_path):
    shot = tmp_path / "page.png"
    done = browse(
        page["path"], f"--screenshot={shot}", "--window-size=1400,3000", "--hide-scrollbars"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pixels = iio.imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1400)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 200
    white = np.all(pixels > 245, axis=-1).mean()
    assert white < 0.97
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["REPORT_SCREENSHOT"])


def test_the_live_report_is_rewritten_while_the_sweep_runs(sweep, tmp_path):
    from sweeps.live import LiveReport

    out = tmp_path / "live"
    with LiveReport(sweep["url"], sweep["name"], out, every_s=0.2) as live:
        deadline = time.monotonic() + 60
        while live.refreshes < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert live.refreshes >= 2
    assert (out / f"{sweep['name']}.html").read_text(encoding="utf-8").startswith("<!DOCTYPE")


def test_a_live_report_of_zero_minutes_never_writes(sweep, tmp_path):
    from sweeps.live import LiveReport

    with LiveReport(sweep["url"], sweep["name"], tmp_path / "off", every_s=0) as live:
        time.sleep(0.5)
    assert live.refreshes == 0 and not (tmp_path / "off").exists()


def test_without_an_evaluation_the_page_says_when_it_comes(page):
    assert "No evaluation yet" in page["html"]


def test_a_pbt_sweep_draws_its_lineage_and_each_members_hyperparameter_path(
    postgres_server, tmp_path
):
    url = new_database(postgres_server)
    prepare_database(url)
    store = ResultsStore(url, spill_dir=tmp_path / "spill", retry_interval_s=0)
    store.start_sweep(
        name="pop",
        algo="PPO",
        search_space=SEARCH_SPACE,
        metric=METRIC,
        mode="max",
        scheduler={"type": "PBT", "population": 3, "perturbation_interval": 500},
    )
    members = [
        write_trial(store, f"m{k}", reason="completed", iterations=20, status="TERMINATED", seed=k)
        for k in range(3)
    ]
    exploits = [("m0", 5, "m2"), ("m1", 10, "m2"), ("m0", 15, "m1")]
    for trial_id, iteration, donor in exploits:
        store.write_lineage(
            trial_id,
            {
                "training_iteration": iteration,
                "kind": "exploit",
                "env_steps": STEPS_PER_ITERATION * iteration,
                "donor": donor,
                "donor_iteration": iteration,
                "donor_env_steps": STEPS_PER_ITERATION * iteration,
                "metric": 300.0,
                "donor_metric": 600.0,
                "old_params": {"lr": 1e-4, "entropy_coeff": 0.01},
                "new_params": {"lr": 2e-4 * iteration, "entropy_coeff": 0.001 * iteration},
            },
        )
    store.write_lineage(
        "m1",
        {
            "training_iteration": 18,
            "kind": "collapse",
            "env_steps": 1800,
            "metric": 200.0,
            "peak": 700.0,
            "old_params": {"lr": 2e-3},
        },
    )
    assert store.close() == 0
    data = read_sweep(url, "pop")
    assert [e["kind"] for e in data.lineage].count("exploit") == 3
    figs = report.build_figures(data, study_importances(url, "mario-sweeps/pop"))
    lineage = gids(figs["lineage"])
    assert trials_in(figs["lineage"], "member") == {m["trial_id"] for m in members}
    assert sorted(g for g in lineage if g.startswith("exploit:")) == sorted(
        f"exploit:{t}:{i}" for t, i, _ in exploits
    )
    assert "collapse:m1:18" in lineage
    paths = figs["hyperparameter-paths"]
    assert trials_in(paths, "path") == {"m0", "m1", "m2"}
    [m0_lr] = [a for a in paths.findobj() if a.get_gid() == "path:m0:lr"]
    # m0 starts at the lr its first exploit replaced, then takes each exploit's new value, held
    # to its last iteration.
    assert list(m0_lr.get_ydata()) == [1e-4, 2e-4 * 5, 2e-4 * 15, 2e-4 * 15]
    assert list(m0_lr.get_xdata())[1:] == [500, 1500, 2000]
    html = report.write_report(url, "pop", tmp_path / "out").read_text()
    assert 'id="fig-lineage"' in html and 'id="fig-hyperparameter-paths"' in html
    assert "3 exploits" in html
    # A member's params are its values now, and the leaderboards say so.
    assert "<th>params now (after exploits)</th>" in html
    assert "3 members, best first" in leaderboard(url, "pop")


def test_an_asha_sweep_says_it_has_no_population(page):
    assert "Not a population sweep" in page["html"] and 'id="fig-lineage"' not in page["html"]
