"""Stable-Baselines3 PPO on the same ``MarioEnv``, network and batch shape as our RLlib PPO.

The baseline ``benchmarks/run.py`` compares RLlib against: same env (``MarioEnv`` with the same
``env_config``), same number of envs, same train batch (``n_steps x n_envs``), minibatch and
epochs, and the same network RLlib builds from ``algos.model.mario_model_config()`` — the Nature
conv stack flattened (no shared dense layer), then one 512-unit ReLU layer for the policy and one
for the value function, over uint8 frames divided by 255 inside the network.

SB3 gets its best setup on our machine: ``SubprocVecEnv`` (one process per env, so stepping uses
both cores) and torch's default thread count for learning.
"""

import functools
import time

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
from torch import nn

from algos.model import NATURE_CNN
from envs import MarioEnv

__all__ = ["MarioCNN", "sb3_ppo_steps_per_second"]


class MarioCNN(BaseFeaturesExtractor):
    """RLlib's Mario encoder for SB3: ``NATURE_CNN`` over channel-first uint8, scaled by 1/255."""

    def __init__(self, observation_space: gym.spaces.Box):
        channels, height, width = observation_space.shape
        layers: list[nn.Module] = []
        for out_channels, kernel, stride, _padding in NATURE_CNN:
            layers += [nn.Conv2d(channels, out_channels, kernel, stride), nn.ReLU()]
            channels = out_channels
        conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            features = conv(torch.zeros(1, *observation_space.shape)).shape[1]
        super().__init__(observation_space, features_dim=features)
        self.conv = conv

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.conv(observations / 255.0)


class _IterationClock(BaseCallback):
    """Records (time, env steps) at the start of every rollout, i.e. of every PPO iteration."""

    def __init__(self):
        super().__init__()
        self.marks: list[tuple[float, int]] = []

    def _on_rollout_start(self) -> None:
        self.marks.append((time.perf_counter(), self.num_timesteps))

    def _on_step(self) -> bool:
        return True


def sb3_ppo_steps_per_second(
    *,
    env_config: dict,
    hparams: dict,
    num_envs: int,
    iterations: int,
    subprocess: bool = True,
) -> dict:
    """Env steps/s of SB3 PPO over ``iterations`` iterations after one warm-up iteration.

    ``hparams`` uses RLlib's names (``train_batch_size_per_learner``, ``minibatch_size``,
    ``num_epochs``, ``lr``, ...), so the caller passes the very dict it built the RLlib config from.
    """
    make = functools.partial(MarioEnv, dict(env_config))
    vec_cls = SubprocVecEnv if subprocess and num_envs > 1 else DummyVecEnv
    venv = vec_cls([make] * num_envs)
    n_steps = max(1, hparams["train_batch_size_per_learner"] // num_envs)
    model = PPO(
        "CnnPolicy",
        venv,
        n_steps=n_steps,
        batch_size=hparams["minibatch_size"],
        n_epochs=hparams["num_epochs"],
        learning_rate=hparams["lr"],
        gamma=hparams["gamma"],
        gae_lambda=hparams["lambda_"],
        clip_range=hparams["clip_param"],
        ent_coef=hparams["entropy_coeff"],
        vf_coef=hparams["vf_loss_coeff"],
        max_grad_norm=hparams["grad_clip"],
        policy_kwargs={
            "features_extractor_class": MarioCNN,
            "net_arch": {"pi": [512], "vf": [512]},
            "activation_fn": nn.ReLU,
            "normalize_images": False,
        },
        device="cpu",
        verbose=0,
    )
    clock = _IterationClock()
    batch = n_steps * num_envs
    model.learn(total_timesteps=batch * (iterations + 1), callback=clock)
    end = (time.perf_counter(), model.num_timesteps)
    venv.close()
    (t0, s0) = clock.marks[1]
    return {
        "env_steps_per_s": (end[1] - s0) / (end[0] - t0),
        "num_envs": num_envs,
        "vec_env": vec_cls.__name__,
        "n_steps": n_steps,
        "torch_threads": torch.get_num_threads(),
    }
