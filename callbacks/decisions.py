"""``DecisionMemory``: what the scheduler and the stopper remember, saved with the experiment.

Tune saves a callback's ``get_state`` with every experiment checkpoint and hands it back to
``set_state`` on ``Tuner.restore``; it saves neither ASHA's rung records, PBT's clocks nor a
stopper's state. Without them a resumed sweep judges a restored trial a second time at every rung
it had passed, against the other trials' post-restore values, PBT perturbs every restored member
at its first result, and the collapse detector forgets the peak a trial fell from. This
callback holds the scheduler and the stopper (pickled with it into ``tuner.pkl``,
so the restored Tuner's scheduler and stopper are the very objects it restores) and carries the
state of each that has ``get_state``/``set_state``.
"""

from typing import Any

from ray.tune import Callback

__all__ = ["DecisionMemory"]


class DecisionMemory(Callback):
    """Saves and restores the state of the sweep's deciders (scheduler, stopper)."""

    def __init__(self, **deciders: Any):
        self.deciders = {
            name: decider
            for name, decider in deciders.items()
            if hasattr(decider, "get_state") and hasattr(decider, "set_state")
        }

    def get_state(self) -> dict:
        return {name: decider.get_state() for name, decider in self.deciders.items()}

    def set_state(self, state: dict) -> None:
        for name, saved in state.items():
            if name in self.deciders:
                self.deciders[name].set_state(saved)
