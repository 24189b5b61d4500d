"""RLlib PPO and DQN for Mario: config builders, the uint8 CNN module, checkpoints, evaluation."""

from algos.builders import DQN_DEFAULTS, PPO_DEFAULTS, Resources, dqn_config, ppo_config
from algos.checkpoints import CheckpointError, load_policy
from algos.hparams import HParamError

__all__ = [
    "DQN_DEFAULTS",
    "PPO_DEFAULTS",
    "CheckpointError",
    "HParamError",
    "Resources",
    "dqn_config",
    "load_policy",
    "ppo_config",
]
