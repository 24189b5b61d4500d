"""The ``"mario"`` env as Ray knows it: a creator RLlib calls inside each env runner."""

from envs.config import validate_env_config
from envs.mario_env import MarioEnv

__all__ = ["ENV_NAME", "mario_env_creator", "register_mario_env"]

ENV_NAME = "mario"


def mario_env_creator(env_config: dict | None = None) -> MarioEnv:
    """Build a ``MarioEnv`` from RLlib's ``EnvContext`` (a dict of the user's env_config keys).

    The emulator is created here, inside the env-runner process: nes-py cannot render from
    threads, and an emulator cannot be pickled to another process.
    """
    return MarioEnv(validate_env_config(dict(env_config or {})))


def register_mario_env() -> str:
    """Register ``"mario"`` with Ray and return the name.

    Ray ships registered creators to every node through its internal KV store, so calling this
    once in the driver before building the Tuner/Algorithm is enough for remote nodes too; calling
    it again is harmless. (Ray Tune is imported here, not with the module: reading ``envs``'
    configs, as the report does, needs no Tune.)
    """
    from ray.tune.registry import register_env

    register_env(ENV_NAME, mario_env_creator)
    return ENV_NAME
