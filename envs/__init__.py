"""Mario env creators registered with Ray: tasks of all four games, preprocessing, shaping."""

from envs.config import EnvConfigError, MarioEnvConfig, validate_env_config
from envs.mario_env import EPISODE_FACTS, MarioEnv
from envs.registration import ENV_NAME, mario_env_creator, register_mario_env
from envs.tasks import GAMES, TaskError

__all__ = [
    "ENV_NAME",
    "EPISODE_FACTS",
    "GAMES",
    "EnvConfigError",
    "MarioEnv",
    "MarioEnvConfig",
    "TaskError",
    "mario_env_creator",
    "register_mario_env",
    "validate_env_config",
]
