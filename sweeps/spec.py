"""``Sweep``: what a sweep file declares (search space, algorithm, budget, metric) and no more.

A sweep file builds one ``Sweep`` and hands it to ``sweeps.runner.main``; every piece of machinery
(CLI, Ray, the store, Optuna, ASHA, collapse detection, W&B, the leaderboard) lives in the runner.
"""

from dataclasses import dataclass, field, replace
from typing import Any

from callbacks.collapse import Collapse

__all__ = [
    "SCHEDULERS",
    "Asha",
    "Collapse",
    "DQN_COLLAPSE",
    "DQN_SMOKE",
    "Imitation",
    "PPO_SMOKE",
    "Pbt",
    "Smoke",
    "Sweep",
    "check_pbt",
]

SCHEDULERS = ("asha", "pbt", "pb2")


@dataclass(frozen=True)
class Asha:
    """ASHA on env steps: rungs at grace_period x reduction_factor^k env steps."""

    grace_period: int
    reduction_factor: int = 3

    def within(self, max_env_steps: int) -> "Asha":
        """This ASHA for a budget of ``max_env_steps``: a budget below the first rung (a quick
        ``--max-env-steps 20000``) moves the rung to the budget, so ASHA stops nothing early.

        >>> Asha(grace_period=50_000).within(20_000).grace_period
        20000
        """
        return replace(self, grace_period=min(self.grace_period, max_env_steps))


@dataclass(frozen=True)
class Pbt:
    """A population and how often it is perturbed (env steps, like the budget)."""

    population: int = 8
    perturbation_interval: int = 50_000
    quantile_fraction: float = 0.25
    """Bottom and top fraction of the population: the bottom copies from the top."""
    resample_probability: float = 0.25
    """PBT only: chance that an explored value is resampled from the search space."""


def check_pbt(pbt: Pbt, *, max_env_steps: int) -> str | None:
    """Why ``pbt`` cannot run (the words of a one-line error), or None."""
    if isinstance(pbt.population, bool) or not 2 <= pbt.population <= 10_000:
        return f"--population {pbt.population} is not allowed; allowed: an integer in [2, 10,000]"
    if not 1 <= pbt.perturbation_interval <= max_env_steps:
        return (
            f"--perturbation-interval {pbt.perturbation_interval} is not allowed; allowed: env "
            f"steps in [1, {max_env_steps:,}] (the budget)"
        )
    if not 0 < pbt.quantile_fraction <= 0.5:
        return (
            f"--quantile-fraction {pbt.quantile_fraction} is not allowed; allowed: a number "
            "in (0, 0.5]"
        )
    if not 0 <= pbt.resample_probability <= 1:
        return f"resample_probability {pbt.resample_probability} is not allowed; allowed: [0, 1]"
    return None


@dataclass(frozen=True)
class Imitation:
    """A behaviour-cloning stage before the trials (``sweeps/bc_ppo.py``): RLlib's BC on the
    sweep's ``--demos``, run once in the driver before any trial, keeping the checkpoint after
    each BC budget that ``bc_iterations`` (searched or fixed) can take; each trial starts PPO from
    the checkpoint its ``bc_iterations`` names (0: from scratch). One run serves every budget:
    10 iterations are the start of 40, so trials with the same budget start from the same clone.
    """

    hparams: dict[str, Any] = field(default_factory=dict)
    """BC's own (``algos.imitation.BC_DEFAULTS`` names); ``Smoke.bc_hparams`` in smoke runs."""


@dataclass(frozen=True)
class Smoke:
    """The tiny budget ``--smoke`` runs: a few trials, a few thousand env steps, small batches.

    Episodes are cut at 48 steps so that every env finishes one within any iteration (PPO's smoke
    batch is 64 steps per env): a trial ASHA stops at its first rung still records episodes.
    """

    num_samples: int = 3
    max_env_steps: int = 1_000
    max_concurrent: int = 2
    hparams: dict[str, Any] = field(default_factory=dict)
    env_config: dict[str, Any] = field(default_factory=lambda: {"max_episode_steps": 48})
    asha: Asha = Asha(grace_period=250, reduction_factor=2)
    pbt: Pbt = Pbt(population=4, perturbation_interval=256)
    confirm_top: int = 1
    confirm_seeds: int = 2
    bc_hparams: dict[str, Any] = field(
        default_factory=lambda: {
            "train_batch_size_per_learner": 32,
            "dataset_num_iters_per_learner": 2,
        }
    )
    """BC's batches in a smoke run of a sweep with ``imitation``."""


PPO_SMOKE = Smoke(
    hparams={
        "train_batch_size_per_learner": 256,
        "minibatch_size": 64,
        "num_epochs": 1,  # 4 made the learner half of a smoke iteration; smoke tests paths, not SGD
        "num_envs_per_env_runner": 4,
    }
)
DQN_SMOKE = Smoke(
    hparams={"num_steps_sampled_before_learning_starts": 200, "replay_capacity": 5_000}
)
DQN_COLLAPSE = Collapse(grace_env_steps=200_000)
"""The collapse rule of DQN sweeps: while epsilon anneals (100k env steps) DQN's x_pos is a
random agent's, and its greedy policy is worse before it is better. A default DQN trial peaked at
~820 exploring, fell to ~480 as epsilon reached 0.02 and was back at ~700 by 162k env steps
(``benchmarks/data/dqn-defaults-DQN-seed0-164k.jsonl``); the 100k grace stopped it at 117k."""


@dataclass(frozen=True)
class Sweep:
    """One hyperparameter sweep.

    ``search_space`` maps hyperparameter names (RLlib's ``training()`` names, see
    ``algos.hparams``) to Tune domains; ``hparams`` fixes others; ``points_to_evaluate`` are
    known-good settings Optuna tries first.
    """

    name: str
    algo: str
    search_space: dict[str, Any]
    max_env_steps: int
    num_samples: int | None = None
    """Trials an ASHA search runs; a sweep without ``asha`` leaves it out: under PBT/PB2 the
    population is the trials (``pbt.population``)."""
    asha: Asha | None = None
    """ASHA on env steps (the default scheduler); None for a sweep that only runs PBT."""
    metric: str = "mario/x_pos_last100"
    """Mean furthest x_pos of the trial's last 100 episodes: comparable across reward settings,
    and its iteration-to-iteration swing is a fifth of the EMA's (BENCHMARKS.md, "Collapse
    detection"), so ASHA's rungs and the collapse rule decide on differences, not noise."""
    mode: str = "max"
    hparams: dict[str, Any] = field(default_factory=dict)
    env_config: dict[str, Any] = field(default_factory=dict)
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    collapse: Collapse = Collapse()
    max_concurrent: int = 2
    seed: int = 0
    checkpoint_every: int = 10
    """Training iterations between checkpoints (a trial also checkpoints at its end)."""
    pbt: Pbt | None = None
    """The population for ``--scheduler pbt`` / ``pb2`` (the default scheduler when the sweep
    has no ``asha``); None: ``Pbt()``'s defaults."""
    confirm_top: int = 3
    """After the search, the best this many distinct configs are re-run over fresh seeds
    (``sweeps.confirm``; 0: no confirm stage)."""
    confirm_seeds: int = 5
    """Seeds per confirmed config: the N of each config's IQM and confidence interval."""
    smoke: Smoke = Smoke()
    imitation: Imitation | None = None
    """A BC stage on ``--demos`` before the trials (PPO only); None: trials start from scratch."""

    def __post_init__(self) -> None:
        if self.asha is not None and self.num_samples is None:
            raise ValueError(f"sweep {self.name!r} has ASHA and needs num_samples")
