"""RLlib's PPO and DQN whose checkpoints also hold their callbacks' state.

RLlib checkpoints an Algorithm's learner, env runners and metrics, not its callbacks. Ours keep
state a trial's scheduler metric depends on (``EpisodeRecorder``'s last-100 window and moving
averages): without it a trial restored by ``--resume`` or a retry reports a metric computed from
its first post-restore episodes only, and ASHA and the collapse detector judge that. Any callback
with ``get_state``/``set_state`` is saved in the Algorithm's own state file and restored with it.
"""

from typing import TYPE_CHECKING

from ray.rllib.algorithms.dqn import DQN
from ray.rllib.algorithms.ppo import PPO

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


class MarioPPO(_CheckpointsCallbacks, PPO):
    """PPO whose checkpoints hold its callbacks' state."""


class MarioDQN(_CheckpointsCallbacks, DQN):
    """DQN whose checkpoints hold its callbacks' state."""
