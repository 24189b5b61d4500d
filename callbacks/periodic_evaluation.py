"""``PeriodicEvaluation``: a trial plays its current policy every N env steps, as a user would.

Training figures describe a sampling policy on the training envs; what a user gets is a kept
checkpoint played under the evaluation protocol (``algos.evaluate.Protocol``: sticky actions,
no-op starts). This callback plays that protocol on the trial actor (outside the training env
runners, so no training episode is lost or mixed in) whenever the trial's lifetime env steps
cross the next multiple of ``every``, with the local env runner's module (RLlib syncs the
learner's new weights into it at the end of every training step). Each evaluation starts from
the same episode seeds, so two evaluations of one trial differ by the policy alone.

It writes into the result: ``eval/flag_rate``, ``eval/x_pos`` and ``eval/env_steps`` (the last
evaluation's, in every result: usable as the sweep's metric), ``eval/checkpoint_score`` (only
in evaluated iterations, NaN otherwise) with ``should_checkpoint`` so Tune saves and ranks that
checkpoint, and the played episodes under ``EVALUATION_KEY`` for ``PostgresCallback``. Its
schedule and last figures travel in the trial's checkpoints (``algos.algorithms``), so a
restored trial evaluates where an uninterrupted one would have.
"""

import math

from ray.rllib.callbacks.callbacks import RLlibCallback

from algos.checkpoints import LoadedPolicy, rllib_algorithm_name
from algos.evaluate import EpisodeResult, Protocol, evaluate
from callbacks.records import (
    ENV_STEPS_KEY,
    EVAL_CHECKPOINT_SCORE,
    EVALUATION_KEY,
    eval_key,
    evaluation_row,
)

__all__ = ["PeriodicEvaluation", "checkpoint_score", "periodic_evaluation"]

X_POS_TIE_BREAK = 100_000
"""x_pos / this is added to the flag rate: below one flag in any evaluation of <= 10 episodes
(1-1 ends near x_pos 3,161), so x_pos only orders checkpoints with the same flag rate."""


def checkpoint_score(flag_rate: float, x_pos: float) -> float:
    """Flag rate first, mean furthest x_pos as the tie-break.

    >>> checkpoint_score(0.2, 1_500) > checkpoint_score(0.0, 3_000)
    True
    """
    return flag_rate + x_pos / X_POS_TIE_BREAK


class PeriodicEvaluation(RLlibCallback):
    """Plays ``episodes`` greedy protocol episodes every ``every`` env steps (see module doc).

    RLlib builds callbacks without arguments: :func:`periodic_evaluation` makes the configured
    subclass."""

    every: int = 0
    episodes: int = 0
    protocol: Protocol = Protocol()

    def __init__(self) -> None:
        super().__init__()
        self._next = self.every
        self._last = {"flag_rate": 0.0, "x_pos": 0.0, "env_steps": 0}

    def get_state(self) -> dict:
        return {"next": self._next, "last": dict(self._last)}

    def set_state(self, state: dict) -> None:
        self._next = int(state["next"])
        self._last = dict(state["last"])

    def on_train_result(self, *, algorithm=None, metrics_logger=None, result: dict, **kwargs):
        env_steps = int(result.get(ENV_STEPS_KEY) or 0)
        score = math.nan
        if self.every > 0 and self.episodes > 0 and env_steps >= self._next:
            played = self._play(algorithm)
            flag_rate = sum(r.flag_get for r in played) / len(played)
            x_pos = sum(r.x_pos for r in played) / len(played)
            self._last = {"flag_rate": flag_rate, "x_pos": x_pos, "env_steps": env_steps}
            self._next = (env_steps // self.every + 1) * self.every
            score = checkpoint_score(flag_rate, x_pos)
            when = {"env_steps": env_steps, "training_iteration": result.get("training_iteration")}
            result[EVALUATION_KEY] = [
                evaluation_row(r, self.protocol, video=None, **when) for r in played
            ]
            result["should_checkpoint"] = True
        result.update({eval_key(name): value for name, value in self._last.items()})
        result[EVAL_CHECKPOINT_SCORE] = score

    def _play(self, algorithm) -> list[EpisodeResult]:
        module = algorithm.get_module()
        policy = LoadedPolicy(
            module, rllib_algorithm_name(type(algorithm)), dict(algorithm.config.env_config)
        )
        return evaluate(policy, episodes=self.episodes, protocol=self.protocol, seed=0)


def periodic_evaluation(every: int, episodes: int) -> type[PeriodicEvaluation]:
    """The ``PeriodicEvaluation`` that plays ``episodes`` episodes every ``every`` env steps."""
    return type(
        f"PeriodicEvaluation{every}x{episodes}",
        (PeriodicEvaluation,),
        {"every": every, "episodes": episodes, "__module__": __name__},
    )
