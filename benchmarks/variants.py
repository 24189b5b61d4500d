"""The trainer configurations ``benchmarks/learning.py`` compares, by name: each a set of
hyperparameters and env options over the builders' defaults, kept so a benchmark in BENCHMARKS.md
can be run again as it was."""

from dataclasses import dataclass, field, replace
from typing import Any

from algos.builders import PPO_DEFAULTS
from benchmarks import with_train_batch


@dataclass(frozen=True)
class Variant:
    """A trainer configuration: hyperparameters and env options over the builder's defaults."""

    algo: str
    hparams: dict[str, Any] = field(default_factory=dict)
    env_config: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    clone: bool = False
    """Start from behaviour cloning of ``--demos`` (``--bc-iterations`` of it), not from scratch."""


VARIANTS: dict[str, Variant] = {
    "defaults": Variant("PPO", doc="PPO_DEFAULTS and the env defaults of today"),
    "dqn-defaults": Variant("DQN", doc="DQN_DEFAULTS and the env defaults of today"),
    "wave1": Variant(
        "PPO",
        hparams={
            "lr": 2.5e-4,
            "gamma": 0.95,
            "lambda_": 0.95,
            "entropy_coeff": 0.01,
            "train_batch_size_per_learner": 1024,
            "minibatch_size": 256,
            "num_epochs": 4,
        },
        env_config={"action_set": "simple", "reward_scale": 0.1},
        doc="wave 1's PPO defaults (gamma 0.95, batch 1024 x 4 epochs, simple actions)",
    ),
    "public": Variant(
        "PPO",
        hparams={
            "lr": 2.5e-4,
            "gamma": 0.9,
            "lambda_": 0.95,
            "entropy_coeff": 0.01,
            "train_batch_size_per_learner": 2048,
            "minibatch_size": 256,
            "num_epochs": 8,
        },
        env_config={"action_set": "right_only", "reward_scale": 0.1},
        doc="what public 1-1 PPO agents share: gamma 0.9, 2048-step batches x 8 epochs, "
        "right-only actions",
    ),
    "flag": Variant(
        "PPO",
        hparams={
            "lr": [[0, 2.5e-4], [1_000_000, 1e-4]],
            "gamma": 0.9,
            "lambda_": 0.95,
            "entropy_coeff": [[0, 0.01], [1_000_000, 1e-3]],
            "train_batch_size_per_learner": 2048,
            "minibatch_size": 256,
            "num_epochs": 8,
        },
        env_config={"action_set": "right_only", "reward_scale": 0.1, "flag_bonus": 50.0},
        doc="public, plus +50 at the flag and lr 2.5e-4 -> 1e-4, entropy 0.01 -> 1e-3 "
        "over 1M env steps (the best public 1-1 recipes' bonus and decays)",
    ),
}


def derived(base: str, *, hparams: dict | None = None, env_config: dict | None = None, **fields):
    """``VARIANTS[base]`` with the given hyperparameters and env options changed, the rest kept."""
    parent = VARIANTS[base]
    return replace(
        parent,
        hparams={**parent.hparams, **(hparams or {})},
        env_config={**parent.env_config, **(env_config or {})},
        **fields,
    )


VARIANTS["flag-sticky"] = derived(
    "flag",
    env_config={"sticky_actions": 0.25, "noop_max": 30},
    doc="flag, trained under the evaluation protocol's sticky actions (0.25) and 0-30 no-op "
    "starts, so it cannot learn a frame-exact route",
)
VARIANTS["flag-sticky-bc"] = derived(
    "flag-sticky",
    hparams={"vf_loss_coeff": 0.1},
    clone=True,
    doc="flag-sticky starting from behaviour cloning of --demos, value coefficient 0.1 (BC "
    "leaves the value head untrained; its first errors should not overwrite the cloned convs)",
)
VARIANTS["flag-sticky-bc-4epochs"] = derived(
    "flag-sticky-bc",
    hparams={"num_epochs": 4},
    doc="flag-sticky-bc with 4 epochs per batch, not 8: the learner's half of each iteration "
    "halved; does it learn as much per env step?",
)
VARIANTS["flag-sticky-bc-gamma095"] = derived(
    "flag-sticky-bc",
    hparams={"gamma": 0.95},
    doc="flag-sticky-bc with wave 1's gamma 0.95, not the public recipes' 0.9: did the shorter "
    "horizon do part of the work?",
)
VARIANTS["flag-bc"] = derived(
    "flag",
    hparams={"vf_loss_coeff": 0.1},
    clone=True,
    doc="flag from behaviour cloning of --demos, value coefficient 0.1 (as flag-sticky-bc)",
)


def sized(variant: Variant, train_batch: int | None) -> Variant:
    """``variant`` with ``train_batch`` env steps per iteration (PPO; minibatches no larger)."""
    if train_batch is None or variant.algo != "PPO":
        return variant
    hparams = {"minibatch_size": PPO_DEFAULTS["minibatch_size"], **variant.hparams}
    return replace(variant, hparams=with_train_batch(hparams, train_batch))
