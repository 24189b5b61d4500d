"""What a resumed sweep's scheduler and stopper remember: ASHA's rungs, PBT's clocks and each
trial's collapse detector, saved with the experiment by ``DecisionMemory``, restored with it."""

import pickle

import pytest
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


def population(kind: str):
    from ray import tune

    from sweeps.pbt import pbt_scheduler
    from sweeps.spec import Pbt

    scheduler = pbt_scheduler(
        kind,
        pbt=Pbt(population=2, perturbation_interval=1_000),
        metric=METRIC,
        mode="max",
        search_space={"lr": tune.loguniform(1e-5, 1e-3)},
        lineage_key="test",
    )
    return scheduler, DecisionMemory(scheduler=scheduler)


class _Controller:
    """The two things PBT asks of Tune's controller on add and on a result."""

    search_alg = None

    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials


@pytest.mark.parametrize("kind", ["pbt", "pb2"])
def test_a_restored_population_perturbs_when_an_uninterrupted_one_would(kind):
    members = [Trial("PPO", config={"lr": 1e-4}, trial_id=f"m{i}", stub=True) for i in (0, 1)]
    controller = _Controller(members)
    scheduler, memory = population(kind)
    for trial in members:
        scheduler.on_trial_add(controller, trial)
    # Both reach the first perturbation point (no donor has a checkpoint yet: nobody exploits).
    for trial, value in zip(members, (800.0, 500.0), strict=True):
        scheduler.on_trial_result(controller, trial, result(1_000, value))
    assert [scheduler._trial_state[t].last_perturbation_time for t in members] == [1_000, 1_000]

    restored_scheduler, fresh_memory = pickle.loads(pickle.dumps(population(kind)))
    fresh_memory.set_state(pickle.loads(pickle.dumps(memory.get_state())))
    for trial in members:
        restored_scheduler.on_trial_add(controller, trial)
    # 1,200 env steps: 200 since its last perturbation, not yet due; a PBT that forgot (Tune's
    # own restore) has it perturbed "at 0" and perturbs it now.
    decision = restored_scheduler.on_trial_result(controller, members[0], result(1_200, 700.0))
    state = restored_scheduler._trial_state[members[0]]
    assert decision == TrialScheduler.CONTINUE and state.last_perturbation_time == 1_000
    assert state.last_score == 800.0 and state.last_result[METRIC] == 800.0
    assert restored_scheduler._num_perturbations == scheduler._num_perturbations
    if kind == "pb2":
        assert restored_scheduler.data.equals(scheduler.data) and len(scheduler.data) == 2
    forgetful, _ = population(kind)
    for trial in members:
        forgetful.on_trial_add(controller, trial)
    forgetful.on_trial_result(controller, members[0], result(1_200, 700.0))
    assert forgetful._trial_state[members[0]].last_perturbation_time == 1_200
