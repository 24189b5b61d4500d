"""RLlib's PPO and DQN whose checkpoints also hold their callbacks' state.

RLlib checkpoints an Algorithm's learner, env runners and metrics, not its callbacks. Ours keep
state a trial's scheduler metric depends on (``EpisodeRecorder``'s last-100 window and moving
averages): without it a trial restored by ``--resume`` or a retry reports a metric computed from
its first post-restore episodes only, and ASHA and the collapse detector judge that. Any callback
with ``get_state``/``set_state`` is saved in the Algorithm's own state file and restored with it.

A PPO trial of an imitation sweep also starts from its clone: ``bc_iterations`` (searched like any
hyperparameter) picks which of the sweep's BC checkpoints (``clone_folder``) it loads, which only
the trial's resolved config can say.
"""

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.dqn import DQN
from ray.rllib.algorithms.ppo import PPO

from algos.imitation import clone_weights

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm

    # A mixin of RLlib's Algorithm: the checker sees that base, runtime keeps ``object``.
    _AlgorithmBase = Algorithm
else:
    _AlgorithmBase = object

__all__ = ["MarioDQN", "MarioPPO"]

CALLBACK_STATE = "mario_callbacks"
"""The key of the callbacks' states in the Algorithm's state (``state.pkl`` of a checkpoint)."""


class _CheckpointsCallbacks(_AlgorithmBase):
    def _stateful_callbacks(self) -> list:
        callbacks = self.callbacks if isinstance(self.callbacks, list) else [self.callbacks]
        return [c for c in callbacks if hasattr(c, "get_state") and hasattr(c, "set_state")]

    def get_state(self, components=None, *, not_components=None, **kwargs):
        state = super().get_state(components, not_components=not_components, **kwargs)
        if components is None:  # the Algorithm's own state, not one component's
            state[CALLBACK_STATE] = [c.get_state() for c in self._stateful_callbacks()]
        return state

    def set_state(self, state) -> None:
        super().set_state(state)
        for callback, saved in zip(
            self._stateful_callbacks(), state.get(CALLBACK_STATE, ()), strict=False
        ):
            callback.set_state(saved)


BC_ITERATIONS = "bc_iterations"
CLONE_FOLDER = "clone_folder"
"""AlgorithmConfig attributes: how many BC iterations the trial starts from (0: from scratch),
and the folder of the sweep's BC run (``algos.imitation.clone``) holding those checkpoints."""


def start_from_clone(default: AlgorithmConfig, config: Any) -> Any:
    """``config`` (Tune's dict or an AlgorithmConfig) starting from the clone its
    ``bc_iterations`` names; unchanged when it names none. Restoring a checkpoint later
    overwrites these weights, as it should."""
    values = config if isinstance(config, dict) else vars(config)
    iterations, folder = values.get(BC_ITERATIONS), values.get(CLONE_FOLDER)
    if not iterations or folder is None:
        return config
    if isinstance(config, dict):
        config = default.update_from_dict(config)
    else:
        config = config.copy(copy_frozen=False)
    spec = replace(config.rl_module_spec, load_state_path=clone_weights(folder, iterations))
    return config.rl_module(rl_module_spec=spec)


class MarioPPO(_CheckpointsCallbacks, PPO):
    """PPO whose checkpoints hold its callbacks' state, started from its clone if it has one."""

    def __init__(self, config: Any = None, **kwargs: Any):
        super().__init__(config=start_from_clone(self.get_default_config(), config), **kwargs)


class MarioDQN(_CheckpointsCallbacks, DQN):
    """DQN whose checkpoints hold its callbacks' state."""
