"""The CNN our Mario agents use: Nature-DQN-sized convolutions over uint8 frames scaled in-module.

Observations travel from env runners to learners as uint8 (4x smaller than float32); RLlib's
default CNN encoder casts nothing, so ``UInt8Scaling`` wraps whichever encoder the catalog builds
and divides by 255 on the way in. Both the PPO and the DQN module use it, and DQN's target network
(a deep copy of the encoder) inherits it.

Conv weights are kept in ``channels_last`` memory format: the encoder's input already is one
(RLlib permutes [B, H, W, C] into a channels-last [B, C, H, W] view), and matching weights spare
torch a layout conversion in every conv (part of the learner ablation in BENCHMARKS.md).
"""

import torch
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from torch import nn

__all__ = ["NATURE_CNN", "MarioDQNModule", "MarioPPOModule", "UInt8Scaling", "mario_model_config"]

# Mnih et al. 2015: [out_channels, kernel, stride]; 84x84 -> 20x20 -> 9x9 -> 7x7 (valid padding).
NATURE_CNN = [[32, [8, 8], 4, "valid"], [64, [4, 4], 2, "valid"], [64, [3, 3], 1, "valid"]]


class UInt8Scaling(nn.Module):
    """Feeds ``obs / 255`` as float32 to the wrapped encoder; everything else passes through."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, batch: dict) -> dict:
        obs = batch[Columns.OBS]
        return self.encoder({**batch, Columns.OBS: obs.float().div_(255.0)})

    def __getattr__(self, name: str):
        # Catalog encoders expose extras (e.g. get_initial_state); forward what we don't define.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["encoder"], name)


class MarioPPOModule(DefaultPPOTorchRLModule):
    """RLlib's default PPO module with the uint8 scaling in front of its encoder."""

    def setup(self):
        super().setup()
        self.encoder = UInt8Scaling(self.encoder)
        self.to(memory_format=torch.channels_last)


class MarioDQNModule(DefaultDQNTorchRLModule):
    """RLlib's default (dueling, double-Q capable) DQN module with uint8 scaling."""

    def setup(self):
        super().setup()
        self.encoder = UInt8Scaling(self.encoder)
        self.to(memory_format=torch.channels_last)


def mario_model_config(**overrides) -> DefaultModelConfig:
    """Nature CNN, ReLU, one 512-unit hidden layer per head, shared conv layers for PPO."""
    options = {
        "conv_filters": NATURE_CNN,
        "conv_activation": "relu",
        "head_fcnet_hiddens": [512],
        "head_fcnet_activation": "relu",
        "vf_share_layers": True,
        **overrides,
    }
    return DefaultModelConfig(**options)
