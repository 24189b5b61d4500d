"""Behaviour cloning on recorded demonstrations, and PPO that starts from what it learned.

BC is RLlib's own (``ray.rllib.algorithms.bc``: MARWIL with beta 0) reading a demonstration
directory (``envs.demonstrations``) through Ray Data. It trains our PPO module: BC's loss reads only
the action logits ``MarioPPOModule._forward_train`` returns, so the cloned weights have the PPO
module's state-dict keys, and ``ppo_config(init_weights=module_weights(bc_checkpoint))`` starts a
PPO trial from them (RLlib loads them into the learner and syncs the env runners before the first
sample). Point it at the module's own directory: RLlib's example points ``load_state_path`` at the
multi-module directory above it, which loads nothing, silently (FIELD-NOTES).

BC never trains the value head: PPO's value loss starts from an untrained head on the conv layers
the policy shares, which is why fine-tuning wants a smaller lr and value coefficient than a fresh
trial (RLlib's example: lr 2e-5, ``vf_loss_coeff`` 0.01).
"""

import gc
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray.data import ActorPoolStrategy
from ray.rllib.algorithms.bc import BC, BCConfig
from ray.rllib.core import (
    COMPONENT_LEARNER,
    COMPONENT_LEARNER_GROUP,
    COMPONENT_RL_MODULE,
    DEFAULT_MODULE_ID,
)
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.sample_batch import DEFAULT_POLICY_ID

from algos.hparams import BC_RULES, check_hparams
from algos.model import MarioPPOModule, mario_model_config
from envs import MarioEnv, validate_env_config
from envs.config import training_env_config
from envs.demonstrations import COMPRESSED_COLUMNS, DemoEpisode, check_demonstrations

__all__ = [
    "BC_DEFAULTS",
    "Clone",
    "MarioBC",
    "bc_config",
    "clone",
    "clone_weights",
    "load_clone",
    "module_weights",
]

# Ray Data 2.60 takes an actor's ``max_restarts`` only through ``ray_remote_args`` (or
# ``ray_remote_args_fn``), both deprecated for 2.64 with a warning at every BC run; without it
# Ray logs an error line for the restartable mapper (see ``bc_config``). Silence that one
# warning, where RLlib passes our kwargs on, until Ray offers the named argument.
warnings.filterwarnings(
    "ignore", message="`ray_remote_args` is deprecated", module="ray.rllib.offline.offline_data"
)

DATA_CPUS = 0.25
"""CPUs each of BC's Ray Data tasks and its mapping actor reserve."""

BC_DEFAULTS: dict[str, Any] = {
    "lr": 2.5e-4,
    "train_batch_size_per_learner": 256,
    "dataset_num_iters_per_learner": 32,
}


class MarioBC(BC):
    """RLlib's BC, closing its Ray Data iterator when it stops: left to the garbage collector it
    may be closed after Ray has shut down, which prints a traceback."""

    def cleanup(self) -> None:
        super().cleanup()
        if self.offline_data is not None:
            self.offline_data.batch_iterators = None
        learner = getattr(self.learner_group, "_learner", None)  # None: remote learners
        if learner is not None:
            learner.iterator = None
        gc.collect()


def bc_config(
    demos: str | Path, *, env_config: dict | None = None, hparams: dict[str, Any] | None = None
) -> BCConfig:
    """A BC config that clones ``demos`` into the PPO module a trainer on ``env_config`` uses.

    Raises ``DemoError`` (one line) when the demonstrations cannot teach that trainer: missing,
    empty, foreign, or recorded with another action set, frame stack or observation size."""
    hparams = dict(hparams or {})
    check_hparams("BC", {**BC_DEFAULTS, **hparams}, BC_RULES)
    hp = {**BC_DEFAULTS, **hparams}
    config = validate_env_config(training_env_config(env_config))
    check_demonstrations(demos, config)
    spaces = MarioEnv(config)  # spaces only: the emulator starts at the first reset
    bc = (
        BCConfig(algo_class=MarioBC)
        .environment(observation_space=spaces.observation_space, action_space=spaces.action_space)
        .framework("torch")
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=MarioPPOModule, model_config=mario_model_config()
            )
        )
        .offline_data(
            input_=[str(Path(demos).absolute())],
            input_compress_columns=list(COMPRESSED_COLUMNS),
            dataset_num_iters_per_learner=hp.pop("dataset_num_iters_per_learner"),
            # Ray Data reads and maps on tasks and an actor of 1 CPU each by default: beside a
            # trial that already holds its CPUs they never schedule and BC waits forever. They
            # decompress a few frames a batch; a quarter CPU each is plenty, and one mapper
            # (``compute``: RLlib's default ``concurrency`` is deprecated since Ray 2.51). The
            # mapper is not restarted: Ray logs an error line for any restartable actor whose
            # constructor arguments (here RLlib's module spec) travel through the object store.
            input_read_method_kwargs={"num_cpus": DATA_CPUS},
            map_batches_kwargs={
                "concurrency": None,
                "compute": ActorPoolStrategy(size=1),
                "num_cpus": DATA_CPUS,
                "max_restarts": 0,
            },
        )
    )
    spaces.close()
    if "seed" in hp:
        bc = bc.debugging(seed=hp.pop("seed"))
    return bc.training(**hp)


def module_weights(checkpoint: str | Path) -> str:
    """The policy module's directory inside an Algorithm checkpoint (BC's or PPO's)."""
    return str(
        Path(checkpoint)
        / COMPONENT_LEARNER_GROUP
        / COMPONENT_LEARNER
        / COMPONENT_RL_MODULE
        / DEFAULT_POLICY_ID
    )


CLONE_RECORD = "clone.json"
"""What a ``clone`` run measured, beside the checkpoints it kept."""


@dataclass(frozen=True)
class Clone:
    """One BC run: its policy loss per iteration, its seconds, and the checkpoints it kept
    (iterations -> the module directory a PPO trial starts from). It cost no env steps."""

    policy_loss: list[float]
    seconds: float
    kept: dict[int, str]
    demos: str = ""
    """The demonstration directory it cloned, absolute."""
    episodes: list[DemoEpisode] = field(default_factory=list)
    """The episodes it cloned (the directory's manifest when BC started)."""


def clone_weights(folder: str | Path, iterations: int) -> str:
    """The module weights a ``clone`` run in ``folder`` kept after ``iterations`` of BC."""
    return module_weights(Path(folder) / f"bc-{iterations}")


def clone(
    demos: str | Path,
    *,
    folder: str | Path,
    keep: Sequence[int],
    env_config: dict | None = None,
    hparams: dict[str, Any] | None = None,
) -> Clone:
    """BC of ``demos`` for ``max(keep)`` iterations, the checkpoint after each of ``keep`` saved in
    ``folder`` (one run serves every budget: 10 iterations are the start of 40).

    Run it where no trial holds the CPUs: Ray Data lists and samples the Parquet files in tasks of
    one CPU that no argument reaches, and beside trials that hold every CPU BC waits forever."""
    budgets = sorted({k for k in keep if k > 0}) or [0]
    start, losses, kept = time.monotonic(), [], {}
    episodes = check_demonstrations(demos, validate_env_config(training_env_config(env_config)))
    Path(folder).mkdir(parents=True, exist_ok=True)
    bc = bc_config(demos, env_config=env_config, hparams=hparams).build_algo()
    try:
        for iteration in range(1, budgets[-1] + 1):
            result = bc.train()
            losses.append(round(float(result["learners"][DEFAULT_MODULE_ID]["policy_loss"]), 4))
            if iteration in budgets:
                bc.save_to_path(Path(folder, f"bc-{iteration}").absolute())
                kept[iteration] = clone_weights(Path(folder).absolute(), iteration)
    finally:
        bc.stop()
    done = Clone(
        policy_loss=losses,
        seconds=round(time.monotonic() - start, 1),
        kept=kept,
        demos=str(Path(demos).absolute()),
        episodes=episodes,
    )
    Path(folder, CLONE_RECORD).write_text(json.dumps(asdict(done)))
    return done


def load_clone(folder: str | Path) -> Clone | None:
    """The ``clone`` run recorded in ``folder``, or None if none finished there."""
    path = Path(folder, CLONE_RECORD)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return Clone(
        policy_loss=record["policy_loss"],
        seconds=record["seconds"],
        kept={int(k): v for k, v in record["kept"].items()},
        demos=record["demos"],
        episodes=[DemoEpisode(**episode) for episode in record["episodes"]],
    )
