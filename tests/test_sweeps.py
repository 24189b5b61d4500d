"""The product's front door: sweep scripts run end to end as users run them (subprocesses).

Each sweep gets its own real PostgreSQL database and state directory; W&B writes offline files.
Sweeps join one Ray head per test process (``tests.helpers.shared_ray_head``), as a user's
sweeps join a cluster.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sweeps.ppo_lr_entropy import SWEEP as PPO_SWEEP
from sweeps.runner import main
from sweeps.spec import PPO_SMOKE, Asha
from tests import wandb_files
from tests.helpers import (
    CONSOLE_NOISE,
    REPO,
    SMOKE_PASSWORD,
    TRIAL_FIGURES,
    assert_nothing_written,
    driver_output,
    gids,
    rows,
    run_module,
    run_sweep,
    script_helps,
    start_sweep,
    sweep_env,
    sweep_rows,
    trials_in,
    wait_for_iterations,
    wait_for_new_training,
)

# Under pytest-xdist, the tests that read one sweep run on the worker that ran it.
READS_THE_SMOKE_SWEEP = pytest.mark.xdist_group("smoke_sweep")
READS_THE_SCHEDULE_SWEEP = pytest.mark.xdist_group("schedule_sweep")


@pytest.mark.slow
@READS_THE_SMOKE_SWEEP
def test_ppo_smoke_sweep_records_its_search_then_confirms_the_top_configs_over_seeds(
    smoke_sweep,
):
    done, fresh_db_url = smoke_sweep.done, smoke_sweep.db_url
    assert "leaderboard (3 search trials" in done.stdout and "best checkpoint: /" in done.stdout
    # The console's progress table is ours (Tune's default output would ignore it).
    assert "x_pos max/iter" in done.stdout and "num_env_runner_sample_calls" not in done.stdout
    [(sweep_id, name, status)] = sweep_rows(fresh_db_url)
    assert (name, status) == ("ppo_lr_entropy-smoke", "finished")
    trials = rows(
        fresh_db_url,
        "SELECT trial_id, params, stop_reason, best_checkpoint FROM mario_sweeps.trials"
        " WHERE sweep_id = %s AND stage = 'search'",
        sweep_id,
    )
    assert len(trials) >= 3
    params = {(p["lr"], p["entropy_coeff"]) for _, p, _, _ in trials}
    assert len(params) == len(trials)  # Optuna chose distinct points
    assert all(reason in ("completed", "asha", "collapse") for _, _, reason, _ in trials)
    assert any(ckpt for *_, ckpt in trials)
    per_trial = rows(
        fresh_db_url,
        "SELECT t.trial_id, (SELECT count(*) FROM mario_sweeps.iterations i"
        "   WHERE i.sweep_id = t.sweep_id AND i.trial_id = t.trial_id),"
        " (SELECT count(*) FROM mario_sweeps.episodes e"
        "   WHERE e.sweep_id = t.sweep_id AND e.trial_id = t.trial_id)"
        " FROM mario_sweeps.trials t WHERE t.sweep_id = %s",
        sweep_id,
    )
    assert all(iterations >= 1 and episodes >= 1 for _, iterations, episodes in per_trial)
    study = rows(
        fresh_db_url,
        "SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id"
        " WHERE s.study_name = %s",
        "mario-sweeps/ppo_lr_entropy-smoke",
    )
    assert len(study) == len(trials)  # confirm trials are not Optuna's
    assert {state for (state,) in study} <= {"COMPLETE", "PRUNED"}  # no zombie RUNNING trials
    for *_, checkpoint in trials:
        assert checkpoint is None or Path(checkpoint).is_dir()  # what Tune kept, not deleted
    assert_the_confirm_stage_reran_the_top_two_configs(fresh_db_url, sweep_id, done.stdout)


def confirmed_lines(stdout: str) -> list[str]:
    """The rows of the last confirmed-configs table printed."""
    table = stdout[stdout.rindex("confirmed configs") :].split("\n\n")[0].splitlines()[2:]
    return [line for line in table if line.strip()]


def assert_the_confirm_stage_reran_the_top_two_configs(db_url, sweep_id, stdout) -> None:
    """4 confirm trials: the 2 best distinct search configs x 2 fresh seeds, full budget, no
    ASHA; every seed's run really differs; the leaderboard shows their IQM intervals."""
    confirmed = rows(
        db_url,
        "SELECT c.repeats, c.seed, c.params = s.params, c.status, c.stop_reason,"
        " c.last_env_steps, c.final_metric,"
        " (SELECT array_agg(e.episode_return ORDER BY e.training_iteration, e.episode_id)"
        "  FROM mario_sweeps.episodes e WHERE e.sweep_id = c.sweep_id"
        "  AND e.trial_id = c.trial_id),"
        " (SELECT count(*) FROM mario_sweeps.evaluations v"
        "  WHERE v.sweep_id = c.sweep_id AND v.trial_id = c.trial_id)"
        " FROM mario_sweeps.trials c JOIN mario_sweeps.trials s"
        " ON s.sweep_id = c.sweep_id AND s.trial_id = c.repeats"
        " WHERE c.sweep_id = %s AND c.stage = 'confirm' ORDER BY c.repeats, c.seed",
        sweep_id,
    )
    top_two = [
        trial_id
        for (trial_id,) in rows(
            db_url,
            "SELECT trial_id FROM mario_sweeps.trials WHERE sweep_id = %s AND stage = 'search'"
            " ORDER BY best_metric DESC, trial_id LIMIT 2",
            sweep_id,
        )
    ]
    assert sorted({r[0] for r in confirmed}) == sorted(top_two)
    assert [(r[0], r[1]) for r in confirmed] == [
        (t, s) for t in sorted(top_two) for s in (1000, 1001)
    ]
    for _, _, same_params, status, reason, steps, final, returns, evals in confirmed:
        assert same_params and status == "terminated" and reason in ("completed", "collapse")
        assert steps >= 1_000 or reason == "collapse"  # the full budget: ASHA is off
        assert final is not None and returns and evals == 2  # --eval-episodes 2
    by_config = {}
    for repeats, _, _, _, _, _, _, returns, _ in confirmed:
        by_config.setdefault(repeats, []).append(returns)
    assert all(first != second for first, second in by_config.values())  # seeds differ
    shown = confirmed_lines(stdout)
    # rank (4), config of (10), params (40), then N (3), each column one space apart
    assert len(shown) == 2 and all("[" in line and line[57:60].strip() == "2" for line in shown)


@pytest.mark.slow
@READS_THE_SMOKE_SWEEP
def test_a_sweep_ends_by_evaluating_its_best_checkpoint_with_rows_a_video_and_w_and_b(
    smoke_sweep,
):
    done, fresh_db_url = smoke_sweep.done, smoke_sweep.db_url
    [(best, checkpoint)] = rows(
        fresh_db_url,
        "SELECT trial_id, best_checkpoint FROM mario_sweeps.trials WHERE stage = 'search'"
        " AND best_checkpoint IS NOT NULL"
        " ORDER BY best_metric DESC NULLS LAST, trial_id LIMIT 1",  # ties: the lower trial id
    )
    evaluations = rows(
        fresh_db_url,
        "SELECT trial_id, checkpoint, policy, count(*), count(DISTINCT episode),"
        " bool_and(x_pos > 0), max(protocol) FROM mario_sweeps.evaluations"
        " WHERE trial_id = %s GROUP BY 1, 2, 3",
        best,
    )
    protocol = "greedy, sticky 0.25, 0-30 no-op starts"
    assert evaluations == [(best, checkpoint, "greedy", 2, 2, True, protocol)]
    assert f"evaluation  trial {best}, 2 episodes ({protocol})" in done.stdout
    assert f"eval: 2 episodes, {protocol}" in done.stdout  # under the leaderboard
    experiment = smoke_sweep.experiment
    import imageio.v3 as iio

    assert len(iio.imread(experiment / "best-greedy.mp4")) > 2  # a real clip, many frames
    logged = list(experiment.glob(f"*_{best}/wandb/offline-run-*/files/media/videos/**/*.mp4"))
    assert logged, "the best trial's W&B run has no video"
    page = experiment / "ppo_lr_entropy-smoke.html"
    assert f"report      {page}" in done.stdout
    html = page.read_text(encoding="utf-8")
    assert 'id="evaluation-table"' in html and 'src="data:video/mp4;base64,' in html
    assert f"Protocol: {protocol}." in html
    assert_figures_cover_every_trial(fresh_db_url, "ppo_lr_entropy-smoke")

    # optuna-dashboard, as the README says to start it, reads the same study back.
    ours = rows(fresh_db_url, "SELECT stop_reason FROM mario_sweeps.trials WHERE stage = 'search'")
    theirs = dashboard_trial_states(fresh_db_url, "mario-sweeps/ppo_lr_entropy-smoke")
    expected = {"completed": "Complete", "collapse": "Complete", "asha": "Pruned"}
    assert sorted(theirs) == sorted(expected[reason] for (reason,) in ours)


@pytest.mark.slow
@READS_THE_SMOKE_SWEEP
def test_a_password_in_the_db_url_reaches_no_file_row_or_console_line(smoke_sweep):
    """Files of every kind (W&B run files with the command line, Tune's pickles, checkpoints,
    the report) and every row of our tables; the console shows it masked."""
    secret = SMOKE_PASSWORD.encode()
    files = [p for p in smoke_sweep.state.rglob("*") if p.is_file() and "postgres" not in p.parts]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "tuner.pkl" for p in files)
    assert [p for p in files if secret in p.read_bytes()] == []
    for table in ("sweeps", "trials", "iterations", "episodes", "evaluations"):
        [(text,)] = rows(
            smoke_sweep.db_url, f"SELECT json_agg(t)::text FROM mario_sweeps.{table} t"
        )
        assert text and SMOKE_PASSWORD not in text, table
    assert SMOKE_PASSWORD not in smoke_sweep.output and "postgres:***@" in smoke_sweep.output


@pytest.mark.slow
@READS_THE_SMOKE_SWEEP
def test_a_smoke_sweeps_console_has_no_error_lines_tracebacks_or_deprecation_notices(smoke_sweep):
    """What a newcomer reads: Ray's and W&B's own noise stays out of the workers' output (a real
    error still shows: the failing-trial tests read it), and W&B's sync hint names the storage
    path, not Ray's temporary session directory."""
    from_workers = [
        line
        for line in smoke_sweep.output.splitlines()
        if "pid=" in line and CONSOLE_NOISE.search(line)
    ]
    assert from_workers == []
    assert not [line for line in smoke_sweep.output.splitlines() if "Traceback" in line]
    assert "wandb sync /tmp/ray" not in smoke_sweep.output
    assert f"wandb sync {smoke_sweep.experiment}/*/wandb/offline-run-*" in smoke_sweep.output


@pytest.mark.slow
@READS_THE_SMOKE_SWEEP
def test_the_drivers_own_console_has_no_error_lines(smoke_sweep):
    noise = [line for line in smoke_sweep.output.splitlines() if CONSOLE_NOISE.search(line)]
    assert noise == []


def assert_figures_cover_every_trial(db_url: str, name: str) -> None:
    """The report's figures, drawn from a real sweep's rows: every trial in each, every stop
    marker with the stop reason the store holds."""
    from sweeps.queries import read_sweep, study_importances
    from sweeps.report import build_figures

    figures = build_figures(
        read_sweep(db_url, name), study_importances(db_url, f"mario-sweeps/{name}")
    )
    stored = dict(rows(db_url, "SELECT trial_id, stop_reason FROM mario_sweeps.trials"))
    searched = {
        t
        for (t,) in rows(db_url, "SELECT trial_id FROM mario_sweeps.trials WHERE stage = 'search'")
    }
    for key, kinds in TRIAL_FIGURES.items():
        # A confirm trial re-runs a searched config: the search's figures draw the search.
        expected = searched if key.startswith("search-") else set(stored)
        for kind in kinds:
            if kind != "vf_loss":  # DQN has no value loss; PPO smoke trials do
                assert trials_in(figures[key], kind) == expected, (key, kind)
    stops = {
        g.split(":")[1]: g.split(":")[2]
        for g in gids(figures["learning-curves"])
        if g.startswith("stop:")
    }
    assert stops == stored


def dashboard_trial_states(db_url: str, study_name: str) -> list[str]:
    """Start ``optuna-dashboard`` on loopback against ``db_url``; the study's trial states."""
    import json
    import socket
    import urllib.request

    from callbacks.store import sqlalchemy_url

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("optuna-dashboard")),
            sqlalchemy_url(db_url),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def get(path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return json.load(response)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = get("/api/studies")["study_summaries"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        [study_id] = [s["study_id"] for s in studies if s["study_name"] == study_name]
        return [trial["state"] for trial in get(f"/api/studies/{study_id}?after=0")["trials"]]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_dqn_sweep_runs_in_smoke_mode_with_a_budget_below_the_first_asha_rung(
    fresh_db_url, tmp_path
):
    done = run_sweep(
        "sweeps/dqn_lr_target.py",
        "--smoke",
        "--confirm-top",
        "0",
        "--num-samples",
        "2",
        "--max-env-steps",
        "200",  # the smoke ASHA's first rung is at 250: it moves to the budget
        "--db-url",
        fresh_db_url,
        "--wandb-mode",
        "disabled",
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [(sweep_id, _, status)] = sweep_rows(fresh_db_url)
    assert status == "finished"
    [(trials, episodes)] = rows(
        fresh_db_url,
        "SELECT count(DISTINCT t.trial_id), count(e.episode_id) FROM mario_sweeps.trials t"
        " LEFT JOIN mario_sweeps.episodes e USING (sweep_id, trial_id) WHERE t.sweep_id = %s",
        sweep_id,
    )
    assert trials == 2 and episodes >= 2
    [(grace,)] = rows(fresh_db_url, "SELECT scheduler->>'grace_period' FROM mario_sweeps.sweeps")
    assert int(grace) == 200


ASHA_SWEEP = """
import sys
from ray import tune
from sweeps.runner import main
from sweeps.spec import Asha, Sweep

# Seeded and sequential, so the run is deterministic: two trials learn (lr 3e-4), two cannot
# (lr 1e-7); ASHA with reduction factor 2 stops trials below the median at each rung.
SWEEP = Sweep(
    name="asha_check",
    algo="PPO",
    search_space={"lr": tune.loguniform(1e-7, 1e-3), "seed": tune.randint(0, 1000)},
    points_to_evaluate=[
        {"lr": 3e-4, "seed": 0},
        {"lr": 1e-7, "seed": 1},
        {"lr": 3e-4, "seed": 2},
        {"lr": 1e-7, "seed": 3},
    ],
    hparams={"train_batch_size_per_learner": 128, "minibatch_size": 64, "num_epochs": 1,
             "num_envs_per_env_runner": 2},
    env_config={"max_episode_steps": 100},
    max_env_steps=768,
    num_samples=4,
    max_concurrent=1,
    asha=Asha(grace_period=256, reduction_factor=2),
    confirm_top=0,
)
if __name__ == "__main__":
    sys.exit(main(SWEEP))
"""


@pytest.mark.slow
def test_asha_stops_the_trials_that_cannot_learn_and_records_why(fresh_db_url, tmp_path):
    script = tmp_path / "asha_sweep.py"
    script.write_text(textwrap.dedent(ASHA_SWEEP))
    done = run_sweep(
        script, "--db-url", fresh_db_url, "--wandb-mode", "disabled", tmp_path=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = rows(
        fresh_db_url, "SELECT params->>'lr', stop_reason, last_env_steps FROM mario_sweeps.trials"
    )
    stopped = [(float(lr), steps) for lr, reason, steps in trials if reason == "asha"]
    assert stopped and all(steps < 768 for _, steps in stopped)
    assert {lr for lr, _ in stopped} >= {1e-7}
    assert any(reason == "completed" for _, reason, _ in trials)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num-samples", "0"], "--num-samples 0 is not allowed; allowed: an integer in [1, "),
        (["--max-env-steps", "-5"], "--max-env-steps -5 is not allowed"),
        (["--max-concurrent", "0"], "--max-concurrent 0 is not allowed"),
        (["--checkpoint-every", "0"], "--checkpoint-every 0 is not allowed; allowed: an integer"),
        (["--wandb-mode", "loud"], "--wandb-mode 'loud' is not allowed; allowed: offline, online"),
        (["--name", "bad name!"], "--name 'bad name!' is not allowed"),
        (["--address", "not an address"], "--address 'not an address' is not allowed"),
        (["--db-url", "mysql://u@h/db"], "--db-url"),
        (["--env-config", '{"world": 9}'], "world=9 does not exist in smb1"),
        (["--env-config", "[1]"], "--env-config '[1]' is not allowed; allowed: a JSON object"),
        (["--task", "SuperMarioBros-9-9-v0"], "task='SuperMarioBros-9-9-v0' is not a registered"),
        (["--resume", "--name", "never-ran"], "--resume: no interrupted sweep 'never-ran'"),
        (["--gpus-per-learner", "-1"], "--gpus-per-learner -1.0 is not allowed"),
        (["--gpus-per-learner", "nan"], "--gpus-per-learner nan is not allowed"),
        (["--gpus-per-learner", "inf"], "--gpus-per-learner inf is not allowed"),
        (["--name", "ok\n"], "--name 'ok\\n' is not allowed"),
        (["--max-env-steps", str(10**30)], "--max-env-steps 1000000000000000000000000000000 is"),
        (["--num-samples", str(10**9)], "--num-samples 1000000000 is not allowed"),
        (["--env-config", '{"idle_penalty": NaN}'], "NaN is not a finite number"),
        (["--env-config", '{"reward_scale": Infinity}'], "Infinity is not a finite number"),
        (["--env-config", '{"stage": [1]}'], "env_config['stage']=[1] is invalid"),
        (["--env-config", '{"task_weights": [1]}'], "only together with env_config['tasks']"),
        (["--env-config", '{"resize": 100000}'], "env_config['resize']=100000 is invalid"),
        (["--storage-path", ""], "--storage-path '' is not allowed"),
        (["--storage-path", "ftp://host/x"], "--storage-path 'ftp://host/x' is not allowed"),
        (["--storage-path", "/proc/self/status/x"], "is not a directory"),
        (["--address", "127.0.0.1:1\n"], "--address '127.0.0.1:1\\n' is not allowed"),
        (["--eval-episodes", "-1"], "--eval-episodes -1 is not allowed"),
        (["--eval-every", "-1"], "--eval-every -1 is not allowed; allowed: an integer in [0, "),
        (["--eval-every", "2000000"], "--eval-every 2000000 is not allowed; allowed: an integer"),
        (["--eval-every", "1000", "--eval-episodes", "0"], "needs --eval-episodes >= 1"),
        (["--report-every", "nan"], "--report-every nan is not allowed"),
        (["--confirm-top", "-1"], "--confirm-top -1 is not allowed; allowed: an integer in [0,"),
        (["--confirm-seeds", "-3"], "--confirm-seeds -3 is not allowed"),
        (["--confirm-top", "1000"], "--confirm-top 1000 is not allowed"),
        (["--wandb-project", "a/b"], "--wandb-project 'a/b' is not allowed"),
        (["--num-samples", "1e3"], "argument --num-samples: invalid int value: '1e3'"),
        (["--perturbation-interval", "nan"], "argument --perturbation-interval: invalid"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_cli_values_fail_with_one_line_and_leave_no_sweep_row(
    argv, message, fresh_db_url, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    if "--db-url" not in argv:
        argv = [*argv, "--db-url", fresh_db_url]
    assert main(PPO_SWEEP, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"points_to_evaluate": [{"lr": 5.0}]},
            "points_to_evaluate[0]: PPO lr=5.0 is out of range",
        ),
        (
            {"points_to_evaluate": [{"lr": "x"}]},
            "points_to_evaluate[0]: PPO lr='x' is not a number",
        ),
        ({"points_to_evaluate": [{"gamma": 0.9}]}, "sets 'gamma', which is not searched"),
        ({"checkpoint_every": -1}, "checkpoint_every=-1 is not allowed"),
        ({"mode": "up"}, "mode='up' is not allowed"),
        ({"metric": ""}, "metric='' is not allowed"),
        ({"seed": -1}, "seed=-1 is not allowed"),
        ({"asha": Asha(grace_period=0)}, "asha=Asha(grace_period=0, reduction_factor=3) is not"),
        ({"smoke": replace(PPO_SMOKE, num_samples=0)}, "smoke.num_samples=0 is not allowed"),
    ],
)
def test_bad_sweep_file_values_fail_with_one_line_before_anything_is_written(
    change, message, fresh_db_url, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    assert main(replace(PPO_SWEEP, **change), ["--smoke", "--db-url", fresh_db_url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sweep 'ppo_lr_entropy': ") and message in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)


def test_a_sweep_scored_by_evaluation_needs_evaluations_during_training(
    fresh_db_url, tmp_path, capsys, monkeypatch
):
    from callbacks.records import EVAL_CHECKPOINT_SCORE
    from sweeps.options import DEFAULT_EVAL_EVERY, parse_options

    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    by_evaluation = replace(PPO_SWEEP, metric="eval/flag_rate")
    assert main(by_evaluation, ["--smoke", "--db-url", fresh_db_url]) == 2
    err = capsys.readouterr().err.strip()
    assert "metric 'eval/flag_rate' needs --eval-every > 0" in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)
    options = parse_options(by_evaluation, ["--smoke", "--eval-every", "500"])
    assert options.eval_every == 500 and options.checkpoint_score == EVAL_CHECKPOINT_SCORE
    # On by default for a full budget; off for smoke runs and budgets below one interval.
    assert parse_options(PPO_SWEEP, []).eval_every == DEFAULT_EVAL_EVERY
    assert parse_options(PPO_SWEEP, ["--smoke"]).eval_every == 0
    short = ["--max-env-steps", str(DEFAULT_EVAL_EVERY - 1)]
    assert parse_options(PPO_SWEEP, short).eval_every == 0
    assert parse_options(PPO_SWEEP, ["--smoke"]).checkpoint_score == PPO_SWEEP.metric


def test_a_storage_path_that_is_a_file_or_unwritable_fails_before_anything_is_written(
    fresh_db_url, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for path, message in [(blocker, "is not a directory"), (blocker / "x", "is not a directory")]:
        argv = ["--db-url", fresh_db_url, "--storage-path", str(path)]
        assert main(PPO_SWEEP, argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)


def test_wandb_online_without_an_api_key_fails_before_anything_is_written(
    fresh_db_url, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from a wandb login
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert main(PPO_SWEEP, ["--db-url", fresh_db_url, "--wandb-mode", "online"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--wandb-mode online needs a W&B API key" in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)


def test_an_unreachable_address_fails_in_seconds_and_leaves_the_name_free(
    fresh_db_url, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    started = time.monotonic()
    assert main(PPO_SWEEP, ["--db-url", fresh_db_url, "--address", "127.0.0.1:1"]) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert "--address '127.0.0.1:1' is not reachable" in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)


@pytest.mark.slow  # starts a local Ray
def test_a_gpu_learner_on_a_machine_without_gpus_fails_instead_of_pending_forever(
    fresh_db_url, tmp_path
):
    done = run_sweep(  # a process of its own: it starts (and must stop) its own local Ray
        "sweeps/ppo_lr_entropy.py",
        "--gpus-per-learner",
        "1",
        "--db-url",
        fresh_db_url,
        tmp_path=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert "the Ray cluster has 0 GPUs" in line
    assert_nothing_written(fresh_db_url, tmp_path / "state")


@pytest.mark.parametrize(
    "spelling",
    [
        ["--db-url", "{url}"],
        ["--db-url={url}"],
        ["--db", "{url}"],
        ["--db={url}"],
        ["--db-u", "{url}"],
    ],
)
def test_the_stored_launch_command_never_holds_the_password_however_the_flag_is_spelled(
    spelling, fresh_db_url
):
    from sweeps.options import parse_options

    url = fresh_db_url.replace("postgres:@", "postgres:s3cr%40t-pw@") + "&password=other-pw"
    options = parse_options(PPO_SWEEP, [s.format(url=url) for s in spelling] + ["--smoke"])
    assert "s3cr" not in options.command and "other-pw" not in options.command
    assert "--db-url 'postgresql://postgres:***@" in options.command
    assert options.command.endswith("--smoke")


def test_a_password_in_the_url_is_warned_about_masked_at_start(fresh_db_url, capsys):
    from sweeps import options as runner_options

    url = fresh_db_url.replace("postgres:@", "postgres:visible-pw@")
    runner_options.warn_about_password(url)
    err = capsys.readouterr().err.strip()
    assert "PGPASSWORD" in err and "visible-pw" not in err and "***" in err and "\n" not in err


def test_unreachable_database_fails_before_ray_starts(tmp_path, capsys, monkeypatch):
    from sweeps import runner

    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(runner, "connect_ray", lambda options: pytest.fail("Ray was started"))
    url = "postgresql://mario:secret-pw@127.0.0.1:1/nowhere"
    assert main(PPO_SWEEP, ["--db-url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "127.0.0.1" in err and "secret-pw" not in err and "\n" not in err


def test_existing_sweep_name_without_resume_fails_before_ray_starts(
    fresh_db_url, tmp_path, capsys, monkeypatch
):
    from callbacks.store import ResultsStore, prepare_database
    from sweeps import runner

    prepare_database(fresh_db_url)
    with ResultsStore(fresh_db_url) as store:
        store.start_sweep(name="taken", algo="PPO", search_space={}, metric="m", mode="max")
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(runner, "connect_ray", lambda options: pytest.fail("Ray was started"))
    assert main(PPO_SWEEP, ["--db-url", fresh_db_url, "--name", "taken"]) == 2
    err = capsys.readouterr().err.strip()
    assert "taken" in err and "--resume" in err and "\n" not in err
    assert [(name, status) for _, name, status in sweep_rows(fresh_db_url)] == [
        ("taken", "running")
    ]


def test_resuming_a_dqn_sweep_through_a_ppo_sweep_file_is_one_line(
    fresh_db_url, tmp_path, monkeypatch
):
    from callbacks.store import ResultsStore, prepare_database
    from sweeps import runner
    from sweeps.cli import SweepError
    from sweeps.options import parse_options

    prepare_database(fresh_db_url)
    with ResultsStore(fresh_db_url) as store:
        store.start_sweep(name="dqn-one", algo="DQN", search_space={}, metric="m", mode="max")
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    options = parse_options(PPO_SWEEP, ["--db-url", fresh_db_url, "--name", "dqn-one"])
    with pytest.raises(SweepError, match="that sweep trains DQN, this sweep file PPO"):
        runner.check_database(replace(options, resume=True), fresh_db_url)


def test_bad_cli_value_exits_non_zero_as_a_script(tmp_path):
    done = run_sweep(
        "sweeps/ppo_lr_entropy.py",
        *("--num-samples", "-1"),
        tmp_path=tmp_path,
        timeout=120,
        ray_head=False,
    )
    assert done.returncode == 2 and "--num-samples -1 is not allowed" in done.stderr


def test_every_sweep_script_has_help(tmp_path):
    entry = re.compile(
        r"^from sweeps\.(runner import main|compare import run_and_compare)$", re.MULTILINE
    )
    scripts = [p for p in sorted((REPO / "sweeps").glob("*.py")) if entry.search(p.read_text())]
    assert len(scripts) >= 3
    helps = script_helps(scripts, env=sweep_env(tmp_path, ray_head=False))
    for script in scripts:
        code, text = helps[script]
        assert code == 0 and "--num-samples" in text, script.name


CHECKPOINT_EVERY = 3
INTERRUPTIBLE = [
    "--smoke",
    "--confirm-top",
    "0",
    "--num-samples",
    "2",
    "--max-concurrent",
    "2",
    "--max-env-steps",
    "3584",
    "--checkpoint-every",
    str(CHECKPOINT_EVERY),
    "--name",
    "interruptible",
]
"""Two trials of 14 smoke iterations, checkpointed every 3: still running when one has 4 (ASHA may
have cut the other at its first rung) and through two more interruptions of 512 env steps each,
each resume picking the trials up from their last checkpoint."""


@pytest.mark.slow
@pytest.mark.faults
def test_ctrl_c_sigterm_and_sigkill_each_stop_a_sweep_that_resumes_as_if_never_interrupted(
    fresh_db_url, tmp_path
):
    """One sweep, stopped three ways and resumed after each: Ctrl-C ends it in seconds with
    complete rows and W&B files; SIGTERM (what a scheduler or ``kill`` sends) is an interruption
    too; after SIGKILL nobody marks it, and the resume still writes every row exactly once."""
    args = [*INTERRUPTIBLE, "--db-url", fresh_db_url, "--wandb-mode", "offline"]
    driver = start_sweep(args, tmp_path)
    try:
        # Past a trial checkpoint (iteration 3) and ASHA's 1,000-step rung (iteration 4).
        wait_for_iterations(fresh_db_url, driver, CHECKPOINT_EVERY + 1)
        os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        interrupted_at = time.monotonic()
        driver.wait(timeout=120)
        took = time.monotonic() - interrupted_at
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130, driver_output(tmp_path)
    assert took < 60, f"one Ctrl-C took {took:.0f} s to end the sweep"
    [(sweep_id, _, status)] = sweep_rows(fresh_db_url)
    assert status == "interrupted"
    [(every,)] = rows(fresh_db_url, "SELECT settings->>'checkpoint_every' FROM mario_sweeps.sweeps")
    assert int(every) == CHECKPOINT_EVERY
    states = rows(
        fresh_db_url, "SELECT status FROM mario_sweeps.trials WHERE sweep_id = %s", sweep_id
    )
    assert states and {s for (s,) in states} <= {"interrupted", "terminated"}
    assert ("interrupted",) in states
    # Every iteration the database has, the trial's W&B offline run has too.
    experiment = tmp_path / "state" / "ray_results" / "interruptible"
    for trial_id, iterations in rows(
        fresh_db_url,
        "SELECT trial_id, array_agg(training_iteration ORDER BY training_iteration)"
        " FROM mario_sweeps.iterations WHERE sweep_id = %s GROUP BY trial_id",
        sweep_id,
    ):
        [run_file] = experiment.glob(f"*_{trial_id}/wandb/offline-run-*/run-*.wandb")
        logged = [h["training_iteration"] for h in wandb_files.history(run_file)]
        assert logged == iterations

    reached = dict(
        rows(
            fresh_db_url,
            "SELECT trial_id, max(env_steps_lifetime) FROM mario_sweeps.iterations"
            " GROUP BY trial_id",
        )
    )
    resumed = [*args, "--resume"]
    driver = start_sweep(resumed, tmp_path)
    try:
        wait_for_new_training(fresh_db_url, driver, 512)
        driver.send_signal(signal.SIGTERM)  # to the driver alone, as `kill PID` does
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130, driver_output(tmp_path)
    assert sweep_rows(fresh_db_url)[0][2] == "interrupted"

    driver = start_sweep(resumed, tmp_path)
    try:
        wait_for_new_training(fresh_db_url, driver, 512)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()
    assert sweep_rows(fresh_db_url)[0][2] == "running"  # killed: nobody marked it

    done = run_sweep("sweeps/ppo_lr_entropy.py", *resumed, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sweep_rows(fresh_db_url)[0][2] == "finished"
    assert_resumed_trials_reported_and_were_judged_as_if_never_interrupted(fresh_db_url, reached)
    for (trial_id,) in rows(fresh_db_url, "SELECT trial_id FROM mario_sweeps.trials"):
        iterations = rows(
            fresh_db_url,
            "SELECT training_iteration FROM mario_sweeps.iterations WHERE trial_id = %s ORDER BY 1",
            trial_id,
        )
        assert [i for (i,) in iterations] == list(range(1, len(iterations) + 1)), trial_id
    for trial_id, episodes, lifetime in rows(
        fresh_db_url,
        "SELECT t.trial_id, (SELECT count(*) FROM mario_sweeps.episodes e"
        "   WHERE e.sweep_id = t.sweep_id AND e.trial_id = t.trial_id),"
        " (SELECT (result->'env_runners'->>'num_episodes_lifetime')::float"
        "   FROM mario_sweeps.iterations i WHERE i.sweep_id = t.sweep_id"
        "   AND i.trial_id = t.trial_id ORDER BY training_iteration DESC LIMIT 1)"
        " FROM mario_sweeps.trials t",
    ):
        assert episodes == lifetime, trial_id


def assert_resumed_trials_reported_and_were_judged_as_if_never_interrupted(
    db_url: str, reached: dict[str, int]
) -> None:
    """Every iteration's ``mario/x_pos_last100`` is the mean of the trial's stored episodes so
    far (all of them while there are at most 100) — also the first ones after the restore, whose
    window came back with the checkpoint; and ASHA stopped no trial at a rung it had passed
    before the interruption (rungs at 250 x 2^k env steps: the smoke sweep's ASHA)."""
    restored_from_a_checkpoint = 0
    for trial_id, pre_max in reached.items():
        iterations = rows(
            db_url,
            "SELECT training_iteration, env_steps_lifetime, (result->>'mario/x_pos_last100')::float"
            " FROM mario_sweeps.iterations WHERE trial_id = %s ORDER BY training_iteration",
            trial_id,
        )
        x_pos = dict(
            rows(
                db_url,
                "SELECT training_iteration, array_agg(x_pos_max) FROM mario_sweeps.episodes"
                " WHERE trial_id = %s GROUP BY training_iteration",
                trial_id,
            )
        )
        window: list[int] = []
        checked = {}
        for iteration, env_steps, metric in iterations:
            window += x_pos.get(iteration, [])
            if len(window) > 100:
                break
            assert metric == pytest.approx(sum(window) / len(window)), (trial_id, iteration)
            checked[iteration] = env_steps
        [(reason, final_steps)] = rows(
            db_url,
            "SELECT t.stop_reason, max(i.env_steps_lifetime) FROM mario_sweeps.trials t JOIN"
            " mario_sweeps.iterations i USING (sweep_id, trial_id) WHERE t.trial_id = %s"
            " GROUP BY t.stop_reason",
            trial_id,
        )
        # It trained on after --resume from its first checkpoint: the iteration after it was
        # the first one after the restore.
        first = CHECKPOINT_EVERY
        if final_steps > pre_max and first + 1 in checked and pre_max >= checked[first]:
            restored_from_a_checkpoint += 1
        if reason == "asha" and final_steps > pre_max:
            rungs = [250 * 2**k for k in range(5)]
            assert any(pre_max < rung <= final_steps for rung in rungs), (trial_id, pre_max)
    assert restored_from_a_checkpoint, "no trial continued from a checkpoint after --resume"


def test_dqn_vs_ppo_checks_both_names_before_running_either(
    fresh_db_url, tmp_path, capsys, monkeypatch
):
    from callbacks.store import ResultsStore, prepare_database
    from sweeps import compare, dqn_vs_ppo, runner

    prepare_database(fresh_db_url)
    with ResultsStore(fresh_db_url) as store:
        store.start_sweep(name="cmp-dqn", algo="DQN", search_space={}, metric="m", mode="max")
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(runner, "connect_ray", lambda options: pytest.fail("Ray was started"))
    assert (
        compare.run_and_compare(dqn_vs_ppo.SWEEPS, ["--db-url", fresh_db_url, "--name", "cmp"]) == 2
    )
    assert "'cmp-dqn' already exists" in capsys.readouterr().err
    assert [name for _, name, _ in sweep_rows(fresh_db_url)] == ["cmp-dqn"]


def test_dqn_vs_ppo_resumes_a_custom_named_comparison_by_its_sweeps_names(tmp_path, monkeypatch):
    from sweeps import dqn_vs_ppo
    from sweeps.cli import SweepError
    from sweeps.options import parse_options

    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    with pytest.raises(SweepError, match="no interrupted sweep 'cmp-ppo'"):
        parse_options(dqn_vs_ppo.SWEEPS[0], ["--resume", "--name", "cmp"], name_suffix="-ppo")


SCHEDULE_SWEEP = """
import sys
from ray import tune
from sweeps.runner import main
from sweeps.spec import Asha, Sweep

# Optuna searches a learning-rate schedule's shape: its start and the fraction it decays to.
SWEEP = Sweep(
    name="schedule_check",
    algo="PPO",
    search_space={"lr": tune.loguniform(1e-4, 1e-3), "lr_decay_to": tune.uniform(0.05, 0.5)},
    hparams={"train_batch_size_per_learner": 128, "minibatch_size": 64, "num_epochs": 1,
             "num_envs_per_env_runner": 2,
             "entropy_coeff": [[0, 0.02], [256, 0.005]]},
    env_config={"max_episode_steps": 100},
    max_env_steps=512,
    num_samples=2,
    asha=Asha(grace_period=512),
    confirm_top=0,
)
if __name__ == "__main__":
    sys.exit(main(SWEEP))
"""


@pytest.fixture(scope="module")
def schedule_sweep(postgres_server, tmp_path_factory) -> str:
    """Two tiny PPO trials searching a schedule's shape, evaluated during training every 256 env
    steps (one greedy episode each time): the database URL its tests read."""
    from tests.databases import create_database

    db_url = create_database(postgres_server)
    tmp_path = tmp_path_factory.mktemp("schedule-sweep")
    script = tmp_path / "schedule_sweep.py"
    script.write_text(textwrap.dedent(SCHEDULE_SWEEP))
    done = run_sweep(
        script,
        "--db-url",
        db_url,
        "--wandb-mode",
        "disabled",
        "--eval-every",
        str(EVAL_EVERY),
        "--eval-episodes",
        "1",
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return db_url


EVAL_EVERY = 256


@pytest.mark.slow
@READS_THE_SCHEDULE_SWEEP
def test_a_sweep_searches_a_schedule_shape_and_every_trial_trains_on_its_schedule(
    schedule_sweep,
):
    fresh_db_url = schedule_sweep
    trials = rows(
        fresh_db_url,
        "SELECT t.params, array_agg(i.env_steps_lifetime ORDER BY i.training_iteration),"
        " array_agg(i.result #> '{learners,default_policy,lr_used}' ORDER BY"
        " i.training_iteration), array_agg((i.result #>> '{learners,default_policy,"
        "curr_entropy_coeff}')::float ORDER BY i.training_iteration)"
        " FROM mario_sweeps.trials t JOIN mario_sweeps.iterations i USING (sweep_id, trial_id)"
        " GROUP BY t.trial_id, t.params",
    )
    assert len(trials) == 2
    assert len({p["lr_decay_to"] for p, *_ in trials}) == 2  # the shape was searched
    for params, steps, used, entropy in trials:
        start, end = params["lr"], params["lr"] * params["lr_decay_to"]
        for at, lrs, coeff in zip(steps, used, entropy, strict=True):
            expected = start + (end - start) * min(at / 512, 1.0)
            lrs = lrs if isinstance(lrs, list) else [lrs]  # RLlib unwraps a one-item series
            assert lrs and all(lr == pytest.approx(expected, rel=1e-6) for lr in lrs)
            assert coeff == pytest.approx(0.02 + (0.005 - 0.02) * min(at / 256, 1.0), rel=1e-6)


@pytest.mark.slow
@READS_THE_SCHEDULE_SWEEP
def test_trials_evaluated_during_training_keep_the_checkpoint_that_played_best(schedule_sweep):
    """--eval-every: each trial plays where its env steps cross a multiple of the interval, the
    episodes are stored with the env steps and the checkpoint Tune saved there, every result
    carries the last evaluation, the trial's kept best checkpoint is its best-playing one, and
    the report draws the evaluations on the learning curves."""
    from callbacks.periodic_evaluation import checkpoint_score
    from callbacks.postgres_callback import NOT_SAVED
    from sweeps.figures import learning_curves, trial_colours
    from sweeps.queries import read_sweep

    db_url = schedule_sweep
    for trial_id, best_checkpoint in rows(
        db_url, "SELECT trial_id, best_checkpoint FROM mario_sweeps.trials"
    ):
        steps = [s for (s,) in rows(db_url, _STEPS_SQL, trial_id)]
        crossed = zip([0, *steps], steps, strict=False)
        due = [s for p, s in crossed if s // EVAL_EVERY > p // EVAL_EVERY]
        played = rows(db_url, _PLAYED_SQL, trial_id)
        assert [env_steps for env_steps, *_ in played] == due and len(due) >= 2
        for _, checkpoint, *_ in played:
            assert checkpoint != NOT_SAVED and trial_id in checkpoint
            assert Path(checkpoint).name.startswith("checkpoint_")
        carried = rows(db_url, _CARRIED_SQL, trial_id)
        assert [flag for flag, _ in carried] == [
            next((p[2] for p in reversed(played) if p[0] <= s), 0.0) for s in steps
        ]
        scores = {checkpoint: checkpoint_score(f, x) for _, checkpoint, f, x in played}
        assert scores[best_checkpoint] == max(scores.values())
    # The best checkpoint's evaluation after training sits beside those played during it.
    assert rows(
        db_url, "SELECT count(*) FROM mario_sweeps.evaluations WHERE NOT during_training"
    ) == [(1,)]
    data = read_sweep(db_url, "schedule_check")
    figure = learning_curves(data, trial_colours([t["trial_id"] for t in data.trials]))
    assert {f"eval:{t['trial_id']}" for t in data.trials} <= set(gids(figure))


_STEPS_SQL = """
SELECT env_steps_lifetime FROM mario_sweeps.iterations WHERE trial_id = %s
ORDER BY training_iteration
"""
_PLAYED_SQL = """
SELECT env_steps, checkpoint, avg(flag_get::int)::float, avg(x_pos)::float
FROM mario_sweeps.evaluations WHERE trial_id = %s AND during_training
GROUP BY env_steps, checkpoint ORDER BY env_steps
"""
_CARRIED_SQL = """
SELECT (result->>'eval/flag_rate')::float, (result->>'eval/env_steps')::bigint
FROM mario_sweeps.iterations WHERE trial_id = %s ORDER BY training_iteration
"""


@pytest.mark.slow
@READS_THE_SMOKE_SWEEP
def test_confirming_again_with_a_third_seed_runs_only_the_missing_pairs_and_compares_them(
    smoke_sweep, tmp_path
):
    """Last of the smoke sweep's readers in this file: it adds confirm trials to its database."""
    fresh_db_url, name = smoke_sweep.db_url, smoke_sweep.name
    before = rows(
        fresh_db_url,
        "SELECT trial_id, finished_at FROM mario_sweeps.trials WHERE stage = 'confirm'",
    )
    again = run_module(
        "sweeps.confirm",
        name,
        "--top",
        "2",
        "--seeds",
        "3",
        "--eval-episodes",
        "1",
        "--db-url",
        fresh_db_url,
        "--wandb-mode",
        "disabled",
        tmp_path=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(2 trials to run" in again.stdout
    after = rows(
        fresh_db_url,
        "SELECT trial_id, finished_at, seed FROM mario_sweeps.trials WHERE stage = 'confirm'",
    )
    assert {(t, f) for t, f, _ in after} >= set(before)  # the finished ones untouched
    assert sorted(seed for t, _, seed in after if (t,) not in {(b,) for b, _ in before}) == [
        1002,
        1002,
    ]
    top, second = (line.split()[1] for line in confirmed_lines(again.stdout))
    compared = run_module(
        "sweeps.compare",
        f"{name}:{top}",
        f"{name}:{second}",
        "--db-url",
        fresh_db_url,
        tmp_path=tmp_path,
    )
    assert compared.returncode == 0, compared.stderr
    assert "3 confirm runs" in compared.stdout and "\nverdict: " in compared.stdout
