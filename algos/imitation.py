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
from pathlib import Path
from typing import Any

from ray.rllib.algorithms.bc import BC, BCConfig
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.sample_batch import DEFAULT_POLICY_ID

from algos.hparams import BC_RULES, check_hparams
from algos.model import MarioPPOModule, mario_model_config
from envs import MarioEnv, validate_env_config
from envs.config import training_env_config
from envs.demonstrations import COMPRESSED_COLUMNS, check_demonstrations

__all__ = ["BC_DEFAULTS", "MarioBC", "bc_config", "module_weights"]

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
            # decompress a few frames a batch; a quarter CPU each is plenty, and one mapper.
            input_read_method_kwargs={"ray_remote_args": {"num_cpus": DATA_CPUS}},
            map_batches_kwargs={"concurrency": 1, "num_cpus": DATA_CPUS},
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
