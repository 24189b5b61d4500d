"""Reading RLlib checkpoints back: the trained policy module and the env config it was trained on.

Evaluation needs neither Ray nor the whole ``Algorithm`` (env runners, learner, optimizer state):
it loads the RLModule alone, so evaluating a checkpoint starts in seconds on any machine.

    python -m algos.export_policy CHECKPOINT DEST

exports just that part (the algorithm's config and the module's weights in half precision, a
sixth of a PPO checkpoint's bytes): how the pretrained agent in ``algos/pretrained`` was made.
"""

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import ray.cloudpickle as pickle  # as RLlib writes checkpoints: callbacks may be made-up classes
from ray.rllib.core.rl_module.rl_module import RLModule

if TYPE_CHECKING:
    from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

__all__ = [
    "PRETRAINED",
    "CheckpointError",
    "LoadedPolicy",
    "export_policy",
    "load_policy",
    "rllib_algorithm_name",
]

_MODULE_DIR = Path("learner_group", "learner", "rl_module", "default_policy")
_MODULE_STATE = "module_state.pkl"

PRETRAINED = Path(__file__).parent / "pretrained" / "smb1-1-1-ppo"
"""The agent ``python -m algos.evaluate`` plays when given no checkpoint (BENCHMARKS.md, "The
pretrained agent": its command, commit, seed and evaluation)."""


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


def export_policy(checkpoint: str | Path, dest: str | Path) -> Path:
    """Write the part of ``checkpoint`` that ``load_policy`` reads to ``dest`` (a new directory),
    with the weights in float16: what a repository can ship. Nothing is left at ``dest`` if any
    step fails."""
    load_policy(checkpoint)  # a checkpoint that cannot be played is not exported
    source, dest = Path(checkpoint).expanduser(), Path(dest).expanduser()
    if dest.exists():
        raise CheckpointError(f"{os.fspath(dest)!r} exists; give a new directory to export to")
    dest.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        with open(source / "class_and_ctor_args.pkl", "rb") as f:
            saved = pickle.load(f)
        with open(building / "class_and_ctor_args.pkl", "wb") as f:
            pickle.dump(_without_start_weights(saved), f)
        shutil.copytree(source / _MODULE_DIR, building / _MODULE_DIR)
        state_file = building / _MODULE_DIR / _MODULE_STATE
        with open(state_file, "rb") as f:
            state = pickle.load(f)
        halved = type(state)((name, _half(value)) for name, value in state.items())
        with open(state_file, "wb") as f:
            pickle.dump(halved, f)
        building.rename(dest)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return dest


def _without_start_weights(saved: dict) -> dict:
    """The saved config less the weights training started from (``load_state_path``: a BC
    clone's folder on the machine that trained it), which playing does not need."""
    config = saved["ctor_args_and_kwargs"][0][0]
    spec = config.get("_rl_module_spec")
    if spec is not None and getattr(spec, "load_state_path", None) is not None:
        config["_rl_module_spec"] = dataclasses.replace(spec, load_state_path=None)
    return saved


def _half(value):
    """float32 weights as float16 (loading casts them back); anything else as it is."""
    if isinstance(value, np.ndarray) and value.dtype == np.float32:
        return value.astype(np.float16)
    return value
