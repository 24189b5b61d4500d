"""What a resumed sweep's scheduler and stopper remember: ASHA's rungs and each trial's collapse
detector, saved with the experiment by ``DecisionMemory`` and handed back on restore."""

import pickle

from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from callbacks.collapse import Collapse, SweepStopper
from callbacks.decisions import DecisionMemory
from sweeps.search import asha_scheduler

METRIC = "mario/x_pos_last100"


def result(env_steps: int, value: float) -> dict:
    return {NUM_ENV_STEPS_SAMPLED_LIFETIME: env_steps, METRIC: value}


def deciders():
    scheduler = asha_scheduler(
        metric=METRIC, mode="max", max_env_steps=10_000, grace_period=1_000, reduction_factor=2
    )
    stopper = SweepStopper(
        metric=METRIC, max_env_steps=10_000, collapse=Collapse(grace_env_steps=0, window=2)
    )
    return scheduler, stopper, DecisionMemory(scheduler=scheduler, stopper=stopper)


def restored(memory: DecisionMemory):
    """As ``Tuner.restore`` does: the deciders unpickled from ``tuner.pkl`` as they were built
    (one pickle, so the callback holds the restored scheduler and stopper), then the callback's
    state saved with the experiment handed back."""
    scheduler, stopper, fresh = pickle.loads(pickle.dumps(deciders()))
    fresh.set_state(pickle.loads(pickle.dumps(memory.get_state())))
    return scheduler, stopper


def test_asha_does_not_judge_a_restored_trial_again_at_a_rung_it_passed():
    scheduler, _, memory = deciders()
    good, bad = Trial("PPO", trial_id="good", stub=True), Trial("PPO", trial_id="bad", stub=True)
    for trial in (good, bad):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, good, result(1_000, 800.0)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, bad, result(1_000, 900.0)) == TrialScheduler.CONTINUE

    scheduler, _ = restored(memory)
    for trial in (good, bad):
        scheduler.on_trial_add(None, trial)
    # Past the 1,000 rung with a lower value than the other trial had there: a fresh ASHA
    # would judge it at that rung again and stop it; the restored one already did.
    assert scheduler.on_trial_result(None, good, result(1_200, 500.0)) == TrialScheduler.CONTINUE
    fresh, _, _ = deciders()
    fresh.on_trial_add(None, bad)
    fresh.on_trial_add(None, good)
    fresh.on_trial_result(None, bad, result(1_200, 900.0))
    assert fresh.on_trial_result(None, good, result(1_200, 500.0)) == TrialScheduler.STOP


def test_the_collapse_detector_keeps_a_trials_peak_through_a_restore():
    _, stopper, memory = deciders()
    assert not stopper("t", result(1_000, 1_000.0))
    assert not stopper("t", result(2_000, 500.0))  # one report 50 % below its peak

    _, stopper = restored(memory)
    # The second report below the peak is a collapse, as it is for a trial never interrupted.
    assert stopper("t", result(3_000, 500.0))
    assert stopper.detectors["t"].peak == 1_000.0


def test_the_optuna_storage_pickles_without_the_password_and_works_after(fresh_db_url):
    """``sweeps.search.PasswordFreeRDBStorage`` edits Optuna's pickled ``engine_kwargs`` (a
    private part of its state; optuna is pinned below 6): the searcher in ``tuner.pkl`` holds no
    password, and the unpickled storage still opens the study (libpq finds the password itself;
    here the embedded server trusts the socket)."""
    import optuna

    from sweeps.search import PasswordFreeRDBStorage

    url = fresh_db_url.replace("postgres:@", "postgres:pickled-Secret@")
    storage = PasswordFreeRDBStorage(url)
    optuna.create_study(study_name="s", storage=storage)
    data = pickle.dumps(storage)
    assert b"pickled-Secret" not in data
    restored = pickle.loads(data)
    assert [s.study_name for s in restored.get_all_studies()] == ["s"]
