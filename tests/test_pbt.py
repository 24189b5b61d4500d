"""PBT/PB2 sweeps end to end (real Ray, RLlib, PostgreSQL): the perturbed values reach the learner,
every exploit is stored once, an interrupted population resumes, and bad settings fail in one line.
"""

import math
import os
import re
import signal
import time
from dataclasses import replace

import pytest
from ray import tune

from sweeps.ppo_pbt import SWEEP as PBT_SWEEP
from sweeps.runner import main
from tests.helpers import assert_nothing_written, rows, run_sweep, start_sweep, sweep_rows

# Tune logs one line per exploit; the store must hold exactly those.
EXPLOIT_LINE = re.compile(r"\[Exploit\] Cloning trial")
LEARNER = "{learners,default_policy}"


def exploit_lines(output: str) -> int:
    """How many exploits Tune itself reported (its scheduler logs one line each)."""
    return len(EXPLOIT_LINE.findall(output))


def lineage(db_url: str) -> list[tuple]:
    return rows(
        db_url,
        "SELECT trial_id, training_iteration, donor, old_params, donor_params, new_params"
        " FROM mario_sweeps.lineage WHERE kind = 'exploit' ORDER BY created_at",
    )


def learner_values(db_url: str, trial_id: str, iteration: int) -> tuple | None:
    """(configured lr, lrs the optimizer stepped with, entropy coeff) of one stored iteration."""
    found = rows(
        db_url,
        "SELECT (result #>> '{learners,default_policy,default_optimizer_learning_rate}')::float,"
        " result #> '{learners,default_policy,lr_used}',"
        " (result #>> '{learners,default_policy,curr_entropy_coeff}')::float"
        " FROM mario_sweeps.iterations WHERE trial_id = %s AND training_iteration = %s",
        trial_id,
        iteration,
    )
    return found[0] if found else None


def member_timelines(db_url: str) -> dict[str, list[tuple[int, int]]]:
    """Each member's stored (iteration, env steps), in iteration order."""
    timelines: dict[str, list[tuple[int, int]]] = {}
    for trial_id, iteration, steps in rows(
        db_url,
        "SELECT trial_id, training_iteration, env_steps_lifetime FROM mario_sweeps.iterations"
        " ORDER BY trial_id, training_iteration",
    ):
        timelines.setdefault(trial_id, []).append((iteration, steps))
    return timelines


def assert_exploits_reached_the_learner(db_url: str, events: list[tuple]) -> None:
    """The iteration after each exploit trained with the member's new values, not the donor's."""
    checked = distinguishing = 0
    for trial_id, iteration, donor, _old, donor_params, new in events:
        # (old may equal new: a member can copy the same donor twice and explore to the same
        # values, and PB2 clips to its bounds.)
        assert donor != trial_id
        after = learner_values(db_url, trial_id, iteration + 1)
        if after is None:
            continue  # exploited at the end of its budget: nothing trained after it
        configured, used, entropy = after
        # What RLlib reports, what every optimizer step used, and the entropy in the loss.
        assert configured == pytest.approx(new["lr"], rel=1e-6)
        assert used and all(lr == pytest.approx(new["lr"], rel=1e-6) for lr in used)
        assert entropy == pytest.approx(new["entropy_coeff"], rel=1e-6)
        checked += 1
        distinguishing += any(new[k] != pytest.approx(donor_params[k], rel=1e-6) for k in new)
    assert checked >= 2
    # PB2 may keep a donor's value; the check above means something only where they differ.
    assert distinguishing >= 1


def assert_members_train_with_their_lineage_values(
    db_url: str, events: list[tuple], before_resume: set[tuple[str, int]]
) -> None:
    """Every iteration between a member's exploit and its next one trained with that exploit's
    new values, also where the exploit came before the interruption and the training after the
    resume (Tune's restore put back the config a member was created with; ``sweeps.pbt`` keeps
    the explored one)."""
    timelines = member_timelines(db_url)
    checked_across_the_resume = 0
    for trial_id, iteration, _, _, _, new in events:
        later = [i for t, i, *_ in events if t == trial_id and i > iteration]
        until = min(later, default=math.inf)
        trained = [i for i, _ in timelines[trial_id] if iteration < i <= until]
        for i in trained:
            configured, _, entropy = learner_values(db_url, trial_id, i)
            assert configured == pytest.approx(new["lr"], rel=1e-6), (trial_id, i)
            assert entropy == pytest.approx(new["entropy_coeff"], rel=1e-6), (trial_id, i)
        checked_across_the_resume += bool(trained) and (trial_id, iteration) in before_resume
    assert checked_across_the_resume >= 1


@pytest.mark.slow
@pytest.mark.faults
def test_an_interrupted_pb2_sweep_resumes_its_population_with_lineage_exactly_once(
    fresh_db_url, tmp_path
):
    """PB2 (PBT's exploit, a GP's explore), interrupted and resumed: what a user of
    ``--scheduler pb2`` sees, every exploit stored once and reaching the learner, each member's
    values surviving the resume. (PBT's own explore is Tune's; our PBT and PB2 classes share
    everything else, and ``tests/test_decisions.py`` restores both.)"""
    # 4 members x 8 iterations of 256 env steps, perturbed every 512: interrupted after the
    # first exploit, the rest of the population's perturbations happen after the resume.
    # (Perturbed after every iteration, a member's stored iterations once read 1, 2, 3, 5: the
    # shift after an exploit came from the donor's last scored result, not from the counter the
    # member restored. It now comes from the member's own next result, which
    # tests/test_postgres_callback.py checks hook by hook.)
    args = [
        "--smoke",
        "--scheduler",
        "pb2",
        "--max-env-steps",
        "2048",
        "--perturbation-interval",
        "512",
        "--name",
        "pbt-resume",
        "--db-url",
        fresh_db_url,
        "--wandb-mode",
        "disabled",
        "--eval-episodes",
        "0",
    ]
    log_path = tmp_path / "driver.log"
    driver = start_sweep(args, tmp_path, script="sweeps/ppo_pbt.py")
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and driver.poll() is None:
            if sweep_rows(fresh_db_url) and lineage(fresh_db_url):
                break
            time.sleep(0.5)
        assert driver.poll() is None, "the sweep ended before it could be interrupted"
        os.killpg(driver.pid, signal.SIGINT)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    first = log_path.read_text()
    assert driver.returncode == 130, first[-3000:]
    assert sweep_rows(fresh_db_url)[0][2] == "interrupted"
    before = {t: len(timeline) for t, timeline in member_timelines(fresh_db_url).items()}
    assert len(before) >= 2  # members that Tune had not started yet have no rows
    before_resume = {(t, i) for t, i, *_ in lineage(fresh_db_url)}

    assert "No Optuna study" in first and "no ASHA rungs" in first and "PB2: population 4" in first

    done = run_sweep("sweeps/ppo_pbt.py", *args, "--resume", tmp_path=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sweep_rows(fresh_db_url)[0][2] == "finished"
    events = lineage(fresh_db_url)
    assert len(events) >= 2
    assert len(events) == exploit_lines(first) + exploit_lines(done.stdout + done.stderr)
    assert len({(t, i) for t, i, *_ in events}) == len(events)
    assert_exploits_reached_the_learner(fresh_db_url, events)
    assert_members_train_with_their_lineage_values(fresh_db_url, events, before_resume)
    html = (tmp_path / "state" / "ray_results" / "pbt-resume" / "pbt-resume.html").read_text()
    assert 'id="fig-lineage"' in html and 'id="fig-hyperparameter-paths"' in html
    after = member_timelines(fresh_db_url)
    assert set(after) >= set(before) and len(after) == 4  # the same population of 4, no more
    for trial_id, timeline in after.items():
        assert [i for i, _ in timeline] == list(range(1, len(timeline) + 1))
        done_before = before.get(trial_id, 0)
        assert len(timeline) > done_before or timeline[-1][1] >= 2048
        if 0 < done_before < len(timeline):
            # The first iteration after the resume continued a checkpoint: a member started
            # from scratch would report one batch (256 env steps) again.
            assert timeline[done_before][1] > 256, trial_id


PBT_BAD = [
    (["--perturbation-interval", "0"], "--perturbation-interval 0 is not allowed"),
    (["--quantile-fraction", "0.7"], "--quantile-fraction 0.7 is not allowed; allowed: a number"),
    (["--quantile-fraction", "0"], "--quantile-fraction 0.0 is not allowed"),
    (["--quantile-fraction", "nan"], "--quantile-fraction nan is not allowed"),
    (["--population", "1"], "--population 1 is not allowed; allowed: an integer in [2,"),
    (["--num-samples", "3"], "--num-samples"),
    (["--confirm-seeds", "-7"], "--confirm-seeds is not allowed with --scheduler pbt"),
]


@pytest.mark.parametrize(("argv", "message"), PBT_BAD)
def test_bad_pbt_settings_fail_with_one_line_and_write_nothing(
    argv, message, fresh_db_url, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    assert main(PBT_SWEEP, [*argv, "--smoke", "--db-url", fresh_db_url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)


ENTROPY_ONLY = {"entropy_coeff": tune.loguniform(1e-4, 1e-1)}
LR_ONLY = {"lr": tune.loguniform(1e-5, 1e-3)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"search_space": ENTROPY_ONLY, "hparams": {"lr": [[0, 1e-3], [900, 1e-4], [100, 0]]}},
            "has steps that do not increase (900 then 100)",
        ),
        (
            {"search_space": ENTROPY_ONLY, "hparams": {"lr": [[0, -1e-3], [900, 1e-4]]}},
            "has a value -0.001 that is out of range",
        ),
        (
            {"search_space": LR_ONLY, "hparams": {"entropy_coeff": [[10, 0.01], [500, 0.0]]}},
            "starts at step 10, not 0",
        ),
        ({"search_space": ENTROPY_ONLY, "hparams": {"lr": -1e-3}}, "PPO lr=-0.001 is out of range"),
        (
            {"search_space": {"lr": tune.uniform(-1e-3, 1e-3)}},
            "PPO lr=Float(-0.001, 0.001) reaching -0.001 is out of range",
        ),
        (
            {"search_space": {**LR_ONLY, "lr_decay_to": tune.uniform(0, 2)}},
            "lr_decay_to=Float(0, 2) reaching 0 is out of range",
        ),
        (
            {"hparams": {"lr": 1e-4}},
            "hyperparameter 'lr' is both fixed (Sweep.hparams) and searched (Sweep.search_space)",
        ),
    ],
)
def test_bad_schedules_and_rates_fail_with_one_line_and_write_nothing(
    change, message, fresh_db_url, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    # --smoke: should a case ever pass the checks, it runs a tiny sweep, not a 1M-step one.
    assert main(replace(PBT_SWEEP, **change), ["--smoke", "--db-url", fresh_db_url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)


def test_pb2_needs_numeric_ranges(fresh_db_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MARIO_SWEEPS_STATE_DIR", str(tmp_path))
    sweep = replace(PBT_SWEEP, search_space={"lr": tune.choice([1e-4, 3e-4])})
    assert main(sweep, ["--scheduler", "pb2", "--smoke", "--db-url", fresh_db_url]) == 2
    err = capsys.readouterr().err.strip()
    assert "--scheduler pb2 needs numeric ranges" in err and "\n" not in err
    assert_nothing_written(fresh_db_url, tmp_path)


def test_a_population_is_the_trials_and_an_asha_sweep_must_count_its_own():
    from sweeps.options import parse_options
    from sweeps.spec import Asha, Sweep

    assert PBT_SWEEP.num_samples is None
    assert parse_options(PBT_SWEEP, []).num_samples == PBT_SWEEP.pbt.population
    assert parse_options(PBT_SWEEP, ["--population", "5"]).num_samples == 5
    with pytest.raises(ValueError, match="'asha-only' has ASHA and needs num_samples"):
        Sweep(name="asha-only", algo="PPO", search_space={}, max_env_steps=1000, asha=Asha(500))
