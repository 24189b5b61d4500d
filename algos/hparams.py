"""Hyperparameters a sweep or a user may set, with the ranges that make sense, checked once.

Names are RLlib's own ``training()`` / ``env_runners()`` argument names, so nothing is renamed on
the way in. A value may be a plain number or a Ray Tune search domain (``tune.loguniform(...)``):
domains are checked by their bounds, so a sweep whose space reaches a negative learning rate fails
before Ray starts rather than in trial 37.

Schedules: ``lr`` and ``entropy_coeff`` also take RLlib's ``[[env_step, value], ...]`` form (first
step 0, increasing steps, linear in between), and ``lr_decay_to`` / ``entropy_decay_to`` give a
schedule's shape as numbers a search can search: the fraction of the start value reached, linearly,
at the end of the trial's budget (``{"lr": tune.loguniform(1e-5, 1e-3), "lr_decay_to":
tune.uniform(0.05, 1.0)}`` searches start and decay together; see ``algos.builders``).
"""

import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Any

from ray.tune.search.sample import Categorical, Domain, Float, Integer, Quantized

__all__ = ["HParamError", "Rule", "check_hparams", "PPO_RULES", "DQN_RULES", "BC_RULES"]


class HParamError(ValueError):
    """A hyperparameter name the algorithm does not have, or a value outside its range."""


@dataclass(frozen=True)
class Rule:
    """What a hyperparameter accepts: a number in [low, high] (open ends where marked).

    Integer rules take ints only (512.0 is a typo RLlib would carry into a shape), and every
    integer rule has a finite ``high``: a batch or buffer of 10**12 is a typo that otherwise
    surfaces as an out-of-memory crash inside a trial.
    """

    low: float
    high: float
    integer: bool = False
    low_open: bool = False
    choices: tuple | None = None
    doc: str = ""
    schedulable: bool = False
    """Also accepts an RLlib schedule ``[[env_step, value], ...]`` whose values obey the rule."""

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        if self.integer:
            return f"an integer in [{int(self.low)}, {int(self.high)}]"
        if math.isinf(self.high):
            number = f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        else:
            number = f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.schedulable:
            return (
                f"{number}, or a schedule [[0, value], [env_step, value], ...] of them with "
                "increasing steps"
            )
        return number

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not accepted (None when it is): the words after ``name=value``."""
        if self.schedulable and isinstance(value, list | tuple):
            return self._schedule_problem(value)
        if self.choices is not None:
            return None if value in self.choices else "is not allowed"
        if self.integer:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                return "is not an integer"
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            return "is not a number"
        elif not math.isfinite(value):
            # nan fails no comparison, and an infinite coefficient or clip is never meant.
            return "is not a finite number"
        above = value > self.low if self.low_open else value >= self.low
        return None if above and value <= self.high else "is out of range"

    def _schedule_problem(self, schedule: list | tuple) -> str | None:
        """What RLlib's ``Scheduler.validate`` checks, plus increasing steps and valid values."""
        if len(schedule) < 2 or any(
            not isinstance(point, list | tuple) or len(point) != 2 for point in schedule
        ):
            return "is not a schedule of two or more [env_step, value] pairs"
        steps = [step for step, _ in schedule]
        if any(
            isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s)
            for s in steps
        ):
            return "has a step that is not a finite number"
        if steps[0] != 0:
            return f"starts at step {steps[0]}, not 0"
        for before, after in itertools.pairwise(steps):
            if after <= before:
                return f"has steps that do not increase ({before} then {after})"
        for _, v in schedule:
            problem = self.problem(v)
            if problem is not None:
                return f"has a value {v!r} that {problem}"
        return None

    def accepts(self, value: Any) -> bool:
        return self.problem(value) is None


_POSITIVE = Rule(0.0, math.inf, low_open=True)
_UNIT = Rule(0.0, 1.0)
# Upper bounds of counts: far above any setting that fits a machine, far below where a typo
# would be allocated. 2**20 Mario observations (84x84x4 uint8) are already about 28 GiB.
_BATCH = Rule(1, 2**20, integer=True)
# Timestep counts: 10**12 is far past any run and well inside int64 (PostgreSQL bigint).
_TIMESTEPS = Rule(1, 10**12, integer=True)
_RUNNERS = Rule(0, 64, integer=True)

_COMMON = {
    "lr": Rule(0.0, 1.0, low_open=True, doc="learning rate", schedulable=True),
    "lr_decay_to": Rule(
        0.0, 1.0, low_open=True, doc="fraction of lr reached, linearly, at the end of the budget"
    ),
    "gamma": Rule(0.0, 1.0, doc="discount factor"),
    "grad_clip": _POSITIVE,
    "train_batch_size_per_learner": _BATCH,
    "num_env_runners": _RUNNERS,
    # Batching gains stop long before 256 envs in one runner (16 measured fastest, PPO_DEFAULTS).
    "num_envs_per_env_runner": Rule(1, 256, integer=True),
    "rollout_fragment_length": _BATCH,
    "seed": Rule(0, 2**31 - 1, integer=True, doc="seeds torch, numpy and every env"),
}

PPO_RULES: dict[str, Rule] = {
    **_COMMON,
    "lambda_": _UNIT,
    "entropy_coeff": Rule(0.0, 1.0, schedulable=True),
    "entropy_decay_to": Rule(
        0.0, 1.0, doc="fraction of entropy_coeff reached, linearly, at the end of the budget"
    ),
    "clip_param": Rule(0.0, 1.0, low_open=True),
    "vf_clip_param": _POSITIVE,
    "vf_loss_coeff": Rule(0.0, math.inf),
    "kl_coeff": Rule(0.0, math.inf),
    "kl_target": _POSITIVE,
    "use_kl_loss": Rule(0, 1, choices=(True, False)),
    "minibatch_size": _BATCH,
    "num_epochs": Rule(1, 1000, integer=True, doc="passes over each train batch"),
    "bc_iterations": Rule(
        0, 10**6, integer=True, doc="BC iterations of the sweep's clone it starts from (0: none)"
    ),
}

DQN_RULES: dict[str, Rule] = {
    **_COMMON,
    "n_step": Rule(1, 100, integer=True),
    "target_network_update_freq": _TIMESTEPS,
    "tau": Rule(0.0, 1.0, low_open=True),
    "double_q": Rule(0, 1, choices=(True, False)),
    "dueling": Rule(0, 1, choices=(True, False)),
    # 10**7 buffered steps at ~25 KiB each (BENCHMARKS.md) is about 240 GiB of RAM.
    "replay_capacity": Rule(1, 10**7, integer=True),
    "num_steps_sampled_before_learning_starts": Rule(0, 10**12, integer=True),
    "epsilon_final": _UNIT,
    "epsilon_timesteps": _TIMESTEPS,
    "training_intensity": _POSITIVE,
}

BC_RULES: dict[str, Rule] = {
    "lr": _COMMON["lr"],
    "train_batch_size_per_learner": _BATCH,
    "dataset_num_iters_per_learner": Rule(
        1, 10**6, integer=True, doc="gradient updates (batches of demonstrations) per iteration"
    ),
    "seed": _COMMON["seed"],
}


def _domain_values(value: Domain) -> list:
    """The extreme values a Tune search domain can produce."""
    if isinstance(value, Categorical):
        return list(value.categories)
    if isinstance(value, Integer):
        sampler = value.get_sampler()
        q = sampler.q if isinstance(sampler, Quantized) else 1
        if q == 1:  # upper is exclusive
            return [value.lower, value.upper - 1]
        # qrandint draws the multiples of q within [lower, upper], both ends inclusive.
        return [math.ceil(value.lower / q) * q, math.floor(value.upper / q) * q]
    if isinstance(value, Float):
        return [value.lower, value.upper]
    return []


def _describe(domain: Domain) -> str:
    """A domain as a user reads it ("Float(32, 256)"), not its object address."""
    return f"{type(domain).__name__}{domain.domain_str}"


def check_hparams(algo: str, hparams: dict[str, Any], rules: dict[str, Rule]) -> None:
    """Raise ``HParamError`` (one line) for an unknown name or a value outside its rule."""
    for name, value in hparams.items():
        rule = rules.get(name)
        if rule is None:
            raise HParamError(
                f"{algo} has no hyperparameter {name!r}; allowed: {', '.join(sorted(rules))}"
            )
        if rule.integer and isinstance(value, Float):
            # Its bounds may be ints, but every sample is a float.
            raise HParamError(
                f"{algo} {name}={_describe(value)} is a float search domain; allowed: "
                f"{rule.allowed()} (tune.randint, tune.qrandint or tune.choice of integers)"
            )
        values = _domain_values(value) if isinstance(value, Domain) else [value]
        for v in values:
            problem = rule.problem(v)
            if problem is not None:
                shown = repr(v) if value is v else f"{_describe(value)} reaching {v!r}"
                raise HParamError(f"{algo} {name}={shown} {problem}; allowed: {rule.allowed()}")
    for shaped, decay in (("lr", "lr_decay_to"), ("entropy_coeff", "entropy_decay_to")):
        if decay in hparams and isinstance(hparams.get(shaped), list | tuple):
            raise HParamError(
                f"{algo} {decay} shapes a fixed {shaped}, but {shaped}={hparams[shaped]!r} is "
                f"already a schedule; allowed: {decay} with a number or search domain for {shaped}"
            )
    batch = hparams.get("train_batch_size_per_learner")
    minibatch = hparams.get("minibatch_size")
    if isinstance(batch, int) and isinstance(minibatch, int) and minibatch > batch:
        raise HParamError(
            f"{algo} minibatch_size={minibatch} is larger than train_batch_size_per_learner="
            f"{batch}; allowed: minibatch_size <= train_batch_size_per_learner"
        )
