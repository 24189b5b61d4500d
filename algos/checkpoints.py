"""Reading RLlib checkpoints back: the trained policy module and the env config it was trained on.

Evaluation needs neither Ray nor the whole ``Algorithm`` (env runners, learner, optimizer state):
it loads the RLModule alone, so evaluating a checkpoint starts in seconds on any machine.
"""

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ray.rllib.core.rl_module.rl_module import RLModule

if TYPE_CHECKING:
    from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

__all__ = ["CheckpointError", "LoadedPolicy", "load_policy", "rllib_algorithm_name"]

_MODULE_DIR = Path("learner_group", "learner", "rl_module", "default_policy")


class CheckpointError(ValueError):
    """A checkpoint path that does not exist or does not hold a readable RLlib checkpoint."""


class LoadedPolicy:
    """A trained RLModule with the algorithm name and env_config its checkpoint recorded."""

    def __init__(self, module: RLModule, algo: str, env_config: dict):
        self.module = module
        self.algo = algo
        self.env_config = env_config


def rllib_algorithm_name(cls: type) -> str:
    """RLlib's name of an algorithm class ("PPO"), also for our subclasses (``MarioPPO``)."""
    return next(c.__name__ for c in cls.__mro__ if c.__module__.startswith("ray."))


def load_policy(path: str | Path) -> LoadedPolicy:
    """Load the default policy of an RLlib (or Tune trial) checkpoint directory."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not exist; expected an RLlib checkpoint directory "
            "(e.g. .../checkpoint_000003 with algorithm_state.pkl inside)"
        )
    if not (root / "class_and_ctor_args.pkl").is_file() or not (root / _MODULE_DIR).is_dir():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not an RLlib algorithm checkpoint; expected "
            f"class_and_ctor_args.pkl and {_MODULE_DIR}/ inside it"
        )
    try:
        with open(root / "class_and_ctor_args.pkl", "rb") as f:
            saved = pickle.load(f)
        config = saved["ctor_args_and_kwargs"][0][0]
        env_config = dict(config["env_config"])
        algo = rllib_algorithm_name(saved["class"])
        # Our modules are torch ones (``framework("torch")``): an nn.Module, with ``eval()``.
        module = cast("TorchRLModule", RLModule.from_checkpoint(root / _MODULE_DIR))
    except Exception as err:  # any unpickling/torch error means the same thing to the user
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); it may be corrupt or "
            "from another version of Ray"
        ) from None
    module.eval()
    return LoadedPolicy(module, algo, env_config)
