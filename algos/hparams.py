"""Hyperparameters a sweep or a user may set, with the ranges that make sense, checked once.

Names are RLlib's own ``training()`` / ``env_runners()`` argument names, so nothing is renamed on
the way in. A value may be a plain number or a Ray Tune search domain (``tune.loguniform(...)``):
domains are checked by their bounds, so a sweep whose space reaches a negative learning rate fails
before Ray starts rather than in trial 37.
"""

import math
from dataclasses import dataclass
from typing import Any

from ray.tune.search.sample import Categorical, Domain, Float, Integer

__all__ = ["HParamError", "Rule", "check_hparams", "PPO_RULES", "DQN_RULES"]


class HParamError(ValueError):
    """A hyperparameter name the algorithm does not have, or a value outside its range."""


@dataclass(frozen=True)
class Rule:
    """What a hyperparameter accepts: a number in [low, high] (open ends where marked)."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False
    choices: tuple | None = None
    doc: str = ""

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        kind = "an integer" if self.integer else "a number"
        left = "(" if self.low_open else "["
        high = "inf" if math.isinf(self.high) else f"{self.high:g}"
        return f"{kind} in {left}{self.low:g}, {high}]"

    def accepts(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not float(value).is_integer():
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high


_POSITIVE = Rule(0.0, math.inf, low_open=True)
_UNIT = Rule(0.0, 1.0)
_COUNT = Rule(1, math.inf, integer=True)
_RUNNERS = Rule(0, 64, integer=True)

_COMMON = {
    "lr": Rule(0.0, 1.0, low_open=True, doc="learning rate"),
    "gamma": Rule(0.0, 1.0, doc="discount factor"),
    "grad_clip": _POSITIVE,
    "train_batch_size_per_learner": _COUNT,
    "num_env_runners": _RUNNERS,
    "num_envs_per_env_runner": _COUNT,
    "rollout_fragment_length": _COUNT,
    "seed": Rule(0, 2**31 - 1, integer=True, doc="seeds torch, numpy and every env"),
}

PPO_RULES: dict[str, Rule] = {
    **_COMMON,
    "lambda_": _UNIT,
    "entropy_coeff": Rule(0.0, 1.0),
    "clip_param": Rule(0.0, 1.0, low_open=True),
    "vf_clip_param": _POSITIVE,
    "vf_loss_coeff": Rule(0.0, math.inf),
    "kl_coeff": Rule(0.0, math.inf),
    "kl_target": _POSITIVE,
    "use_kl_loss": Rule(0, 1, choices=(True, False)),
    "minibatch_size": _COUNT,
    "num_epochs": _COUNT,
}

DQN_RULES: dict[str, Rule] = {
    **_COMMON,
    "n_step": Rule(1, 100, integer=True),
    "target_network_update_freq": _COUNT,
    "tau": Rule(0.0, 1.0, low_open=True),
    "double_q": Rule(0, 1, choices=(True, False)),
    "dueling": Rule(0, 1, choices=(True, False)),
    "replay_capacity": _COUNT,
    "num_steps_sampled_before_learning_starts": Rule(0, math.inf, integer=True),
    "epsilon_final": _UNIT,
    "epsilon_timesteps": _COUNT,
    "training_intensity": _POSITIVE,
}


def _domain_values(value: Domain) -> list:
    """The extreme values a Tune search domain can produce."""
    if isinstance(value, Categorical):
        return list(value.categories)
    if isinstance(value, Float | Integer):
        high = value.upper - 1 if isinstance(value, Integer) else value.upper
        return [value.lower, high]
    return []


def check_hparams(algo: str, hparams: dict[str, Any], rules: dict[str, Rule]) -> None:
    """Raise ``HParamError`` (one line) for an unknown name or a value outside its rule."""
    for name, value in hparams.items():
        rule = rules.get(name)
        if rule is None:
            raise HParamError(
                f"{algo} has no hyperparameter {name!r}; allowed: {', '.join(sorted(rules))}"
            )
        values = _domain_values(value) if isinstance(value, Domain) else [value]
        for v in values:
            if not rule.accepts(v):
                shown = value if not isinstance(value, Domain) else f"{value} reaching {v!r}"
                raise HParamError(
                    f"{algo} {name}={shown!r} is out of range; allowed: {rule.allowed()}"
                )
    batch = hparams.get("train_batch_size_per_learner")
    minibatch = hparams.get("minibatch_size")
    if isinstance(batch, int) and isinstance(minibatch, int) and minibatch > batch:
        raise HParamError(
            f"{algo} minibatch_size={minibatch} is larger than train_batch_size_per_learner="
            f"{batch}; allowed: minibatch_size <= train_batch_size_per_learner"
        )
