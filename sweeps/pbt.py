"""Population-based training for a sweep: Tune's PBT or PB2, with the lineage on record.

A population trains side by side; every ``perturbation_interval`` env steps a member in the bottom
``quantile_fraction`` by the sweep's metric copies the checkpoint of one in the top quantile
(exploit) and perturbs or resamples the searched hyperparameters (explore: PBT multiplies by 0.8
or 1.2 or resamples from the search space; PB2 picks new values with a GP bandit inside the
search space's bounds). More members than free CPUs are time-multiplexed by Tune (a member pauses
at a perturbation point while a less advanced one runs), so a population of 8 runs on 2 cores,
two at a time; on a cluster with 8 trial slots all run at once.

Two things Tune does not do that a user needs: the exploit events are published to
:mod:`callbacks.lineage` (and so stored), and the new values really reach the learner — that is
``algos.builders``' ``_ConfiguredLearningRate``; the entropy coefficient is read from the config
the member is rebuilt with.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pyarrow.fs import FileType
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.train import Checkpoint
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2

from callbacks.lineage import LineageEvent, publish
from sweeps.spec import Pbt

if TYPE_CHECKING:
    # A mixin of Tune's PBT: the checker sees that base, runtime keeps ``object``.
    _SchedulerBase = PopulationBasedTraining
else:
    _SchedulerBase = object

__all__ = ["MarioPB2", "MarioPBT", "pb2_bounds", "pbt_scheduler"]


def _params(config: dict, keys: list[str]) -> dict[str, Any]:
    return {key: config.get(key) for key in keys}


def _keep_on_restore(trial, keys: list[str]) -> None:
    """Make the explored values the ones ``--resume`` restores.

    On ``Tuner.restore`` Tune's ``add_trial`` calls ``Trial.resolve_config_placeholders``, which
    deep-copies the config the trial was *created* with (the private ``__unresolved_config``) over
    the one PBT set: an exploit just before an interruption was undone (ray #54755, #62173). The
    searched values are plain numbers, so writing them into that config is safe. Guard:
    ``tests/test_pbt.py``'s resume test checks every member trains with its last lineage values.
    """
    unresolved = trial._Trial__unresolved_config
    for key in keys:
        unresolved[key] = trial.config[key]


_TRIAL_FIELDS = ("last_score", "last_perturbation_time", "last_train_time")


class _PublishesLineage(_SchedulerBase):
    """Publish every exploit to :mod:`callbacks.lineage` under ``lineage_key``, and keep its
    values and the population's clocks through ``--resume``."""

    lineage_key: str
    searched: list[str]
    _restored: dict[str, dict]

    def get_state(self) -> dict:
        """What Tune does not save of a PBT (``DecisionMemory`` does): per member, when it last
        perturbed, its last score, result and checkpoint; the population's counters. Without
        them every restored member has perturbed "at 0" and is perturbed at its first result."""
        members = {}
        for trial, state in self._trial_state.items():
            checkpoint = state.last_checkpoint  # a save still in flight is not kept
            members[trial.trial_id] = {
                **{field: getattr(state, field) for field in _TRIAL_FIELDS},
                "last_result": _scalars(state.last_result),
                "last_checkpoint": checkpoint if isinstance(checkpoint, Checkpoint) else None,
            }
        counters = {name: getattr(self, name) for name in self._counters()}
        return {"members": members, "counters": counters}

    def set_state(self, state: dict) -> None:
        """Counters now; a member's fields when Tune adds its restored trial (after this)."""
        for name, value in state["counters"].items():
            setattr(self, name, value)
        self._restored = dict(state["members"])

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        saved = getattr(self, "_restored", {}).pop(trial.trial_id, None)
        if saved is not None:
            member = self._trial_state[trial]
            for field, value in saved.items():
                setattr(member, field, value)
            kept = saved["last_checkpoint"]
            if kept and _gone(kept):
                member.last_checkpoint = None  # deleted since: not a donor until it saves again

    def _counters(self) -> tuple[str, ...]:
        return ("_next_perturbation_sync", "_num_perturbations", "_num_checkpoints")

    def _exploit(self, tune_controller, trial, trial_to_clone) -> None:
        member = self._trial_state[trial]
        donor = self._trial_state[trial_to_clone]
        old_params = _params(trial.config, self.searched)
        donor_params = _params(trial_to_clone.config, self.searched)
        checkpoint = donor.last_checkpoint
        super()._exploit(tune_controller, trial, trial_to_clone)
        _keep_on_restore(trial, self.searched)
        # Tune types results as dict[str, object]; these values are numbers or None.
        mine: Mapping[str, Any] = member.last_result or {}
        theirs: Mapping[str, Any] = donor.last_result or {}
        metric = self._metric
        assert metric is not None  # PBT's on_trial_add refused every trial without one
        event: LineageEvent = {
            "trial_id": trial.trial_id,
            "training_iteration": int(mine.get("training_iteration", 0)),
            "env_steps": mine.get(NUM_ENV_STEPS_SAMPLED_LIFETIME),
            "donor": trial_to_clone.trial_id,
            "donor_iteration": int(theirs.get("training_iteration", 0)),
            "donor_env_steps": theirs.get(NUM_ENV_STEPS_SAMPLED_LIFETIME),
            "checkpoint": getattr(checkpoint, "path", None),
            "metric": mine.get(metric),
            "donor_metric": theirs.get(metric),
            "old_params": old_params,
            "donor_params": donor_params,
            "new_params": _params(trial.config, self.searched),
        }
        publish(self.lineage_key, event)


class MarioPBT(_PublishesLineage, PopulationBasedTraining):
    """Tune's PBT, publishing its lineage."""


class MarioPB2(_PublishesLineage, PB2):
    """Tune's PB2 (GP-bandit explore), publishing its lineage."""

    def _counters(self) -> tuple[str, ...]:
        # The GP's observations (``data``) are what PB2 explores from.
        return (*super()._counters(), "data", "current", "last_exploration_time")


def _gone(checkpoint: Checkpoint) -> bool:
    assert checkpoint.filesystem is not None  # a Checkpoint always resolves its filesystem
    return checkpoint.filesystem.get_file_info(checkpoint.path).type == FileType.NotFound


def _scalars(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A result's plain values: all PBT and the lineage read of it."""
    if result is None:
        return None
    return {k: v for k, v in result.items() if isinstance(v, int | float | str | bool)}


def pbt_scheduler(
    kind: str,
    *,
    pbt: Pbt,
    metric: str,
    mode: str,
    search_space: dict[str, Any],
    lineage_key: str,
):
    """A PBT or PB2 scheduler over the sweep's search space, on env steps."""
    common: dict[str, Any] = {
        "time_attr": NUM_ENV_STEPS_SAMPLED_LIFETIME,
        "metric": metric,
        "mode": mode,
        "perturbation_interval": pbt.perturbation_interval,
        "quantile_fraction": pbt.quantile_fraction,
        "log_config": True,
    }
    scheduler: MarioPBT | MarioPB2
    if kind == "pbt":
        scheduler = MarioPBT(
            hyperparam_mutations=dict(search_space),
            resample_probability=pbt.resample_probability,
            **common,
        )
    else:
        # Ray types the bounds as an invariant Dict[str, dict | list | tuple]; lists they are.
        bounds = pb2_bounds(search_space)
        scheduler = MarioPB2(hyperparam_bounds=bounds, **common)  # type: ignore[arg-type]
    scheduler.lineage_key = lineage_key
    scheduler.searched = list(search_space)
    return scheduler


def pb2_bounds(search_space: dict[str, Any]) -> dict[str, list[float]]:
    """PB2's ``[low, high]`` per searched value; a ValueError names one PB2 cannot bound."""
    bounds = {}
    for key, domain in search_space.items():
        low, high = getattr(domain, "lower", None), getattr(domain, "upper", None)
        if low is None or high is None:
            raise ValueError(
                f"--scheduler pb2 needs numeric ranges; search space key {key!r} is "
                f"{type(domain).__name__}; allowed: tune.uniform/loguniform/randint domains"
            )
        bounds[key] = [low, high]
    return bounds
