"""Before/after measurements of each speed-up, every pair side by side in one process and run.

    python benchmarks/ablations.py env       # per-frame info dict + INTER_AREA vs ours
    python benchmarks/ablations.py learner   # RLlib's PPO learner and module layout vs ours
    python benchmarks/ablations.py dqn-learner  # RLlib's DQN learner vs ours (one thread)
    python benchmarks/ablations.py envs      # 4 / 8 / 16 envs per env runner
    python benchmarks/ablations.py dqn       # RLlib's DQN sampling fragment vs ours

Variants alternate (A, B, A, B, ...) so that load from elsewhere hits both alike. ``learner`` and
``envs`` use ``benchmarks/run.py``'s whole-machine config; ``dqn`` and ``dqn-learner`` a default
trial (one env runner, a one-thread learner), which is what a sweep runs.
"""

import argparse
import statistics

import cv2
import numpy as np
import torch

from algos import DQN_DEFAULTS, PPO_DEFAULTS, Resources, dqn_config, ppo_config
from algos.model import MarioPPOModule
from benchmarks import run
from benchmarks.env_throughput import raw_frames_per_second, wrapped_steps_per_second
from benchmarks.measure import training_steps_per_second, warm_up
from envs import MarioEnv, register_mario_env

TASK = run.TASK


class ReferenceMarioEnv(MarioEnv):
    """``MarioEnv`` as it was: ``NESEnv.step`` (with its info dict) on every frame of a skip, and
    ``cv2.INTER_AREA`` resizing."""

    def _to_frame(self, image: np.ndarray) -> np.ndarray:
        height, width = self.config.resize
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    def step(self, action):
        cfg = self.config
        nes, button = self._nes, self._bytes[int(action)]
        reward, terminated, truncated, info = 0.0, False, False, None
        for i in range(cfg.frame_skip):
            _, frame_reward, terminated, truncated, info = nes.step(button)
            reward += frame_reward
            if terminated or truncated:
                break
            if i == cfg.frame_skip - 2:
                self._copy_screen(self._pool)
        latest = self._copy_screen(self._latest)
        if not (terminated or truncated):
            np.maximum(self._pool, latest, out=latest)
        self._frames.append(self._to_frame(latest))
        facts = self._facts(info)
        self._x_pos = facts["x_pos"]
        self._steps += 1
        if cfg.max_episode_steps is not None and self._steps >= cfg.max_episode_steps:
            truncated = truncated or not terminated
        return self._observation(), reward * cfg.reward_scale, terminated, truncated, facts


def ablate_env(seconds: float, rounds: int) -> None:
    import gym_super_mario_bros

    rom = gym_super_mario_bros.make(TASK).unwrapped._rom_path
    frame_skip = MarioEnv({"task": TASK}).config.frame_skip
    raw, before, after = [], [], []
    for _ in range(rounds):
        raw.append(raw_frames_per_second(rom, seconds) / frame_skip)
        before.append(wrapped_steps_per_second(TASK, seconds, env_class=ReferenceMarioEnv))
        after.append(wrapped_steps_per_second(TASK, seconds))
    ceiling = statistics.median(raw)
    for name, rates in (("before", before), ("after", after)):
        rate = statistics.median(rates)
        print(f"env {name:<7} {rate:7.1f} steps/s  {rate / ceiling:6.1%} of raw/skip {ceiling:.0f}")


class StockLayoutPPOModule(MarioPPOModule):
    """Our PPO module with RLlib's default (contiguous) conv weight layout."""

    def setup(self):
        super().setup()
        self.to(memory_format=torch.contiguous_format)


def _stock_learner(config):
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from algos.model import mario_model_config

    spec = RLModuleSpec(module_class=StockLayoutPPOModule, model_config=mario_model_config())
    return config.learners(learner_class=PPOTorchLearner).rl_module(rl_module_spec=spec)


def ablate_learner(iterations: int, rounds: int, threads: int) -> None:
    torch.set_num_threads(threads)
    hparams = {**PPO_DEFAULTS, "num_env_runners": 2}
    variants = {"RLlib learner": _stock_learner, "ours": lambda config: config}
    for _ in range(rounds):
        for name, change in variants.items():
            config = change(ppo_config(hparams=hparams, resources=Resources.whole_machine(2)))
            algo = config.build_algo()
            row = training_steps_per_second(algo, iterations, warm_up(algo))
            algo.stop()
            print(
                f"{name:<14} torch threads {threads}: PPO {row['env_steps_per_s']:6.1f} steps/s, "
                f"learner {row['learner_s_per_iteration']:.2f} s per iteration",
                flush=True,
            )


def ablate_envs(seconds: float, iterations: int) -> None:
    torch.set_num_threads(2)
    for envs in (4, 8, 16, 4, 8, 16):
        hparams = {**PPO_DEFAULTS, "num_env_runners": 2, "num_envs_per_env_runner": envs}
        row = run.bench_ppo(
            hparams=hparams,
            resources=Resources.whole_machine(2),
            seconds=seconds,
            iterations=iterations,
        )
        print(
            f"{envs:>2} envs per runner: sampling {row['sampling']['env_steps_per_s']:6.1f}, "
            f"PPO {row['ppo']['env_steps_per_s']:6.1f} steps/s",
            flush=True,
        )


def ablate_dqn(iterations: int, rounds: int) -> None:
    torch.set_num_threads(1)
    # A fragment of n_step with our training intensity gives RLlib's default round-robin
    # weights [1, 1]: one 32-sample update per n_step x envs sampled steps, as before.
    variants = {"RLlib fragment": {"rollout_fragment_length": DQN_DEFAULTS["n_step"]}, "ours": {}}
    for _ in range(rounds):
        for name, change in variants.items():
            row = run.bench_dqn(
                hparams={**DQN_DEFAULTS, **change},
                resources=Resources(),
                iterations=iterations,
                learning_starts=1000,
            )["dqn"]
            print(
                f"{name:<15} DQN {row['env_steps_per_s']:6.1f} steps/s, learner "
                f"{row['learner_s_per_iteration']:.2f} s and the rest "
                f"{row['sampling_and_rest_s_per_iteration']:.2f} s per "
                f"{row['env_steps_per_iteration']:.0f} steps",
                flush=True,
            )


def ablate_dqn_learner(iterations: int, rounds: int) -> None:
    from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner

    torch.set_num_threads(1)
    variants = {
        "RLlib learner": lambda config: config.learners(learner_class=DQNTorchLearner),
        "ours": lambda config: config,
    }
    for _ in range(rounds):
        for name, change in variants.items():
            config = dqn_config(hparams={"num_steps_sampled_before_learning_starts": 1000})
            algo = change(config).build_algo()
            row = training_steps_per_second(algo, iterations, warm_up(algo, 1000))
            algo.stop()
            print(
                f"{name:<14} DQN {row['env_steps_per_s']:6.1f} steps/s, learner "
                f"{row['learner_s_per_iteration']:.2f} s per {row['env_steps_per_iteration']:.0f} "
                "steps",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["env", "learner", "envs", "dqn", "dqn-learner"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="learner torch threads")
    args = parser.parse_args(argv)
    if args.what == "env":
        ablate_env(args.seconds, max(args.rounds, 3))
        return
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_mario_env()
    try:
        if args.what == "learner":
            ablate_learner(args.iterations, args.rounds, args.threads)
        elif args.what == "envs":
            ablate_envs(args.seconds, args.iterations)
        elif args.what == "dqn-learner":
            ablate_dqn_learner(args.iterations, args.rounds)
        else:
            ablate_dqn(args.iterations, args.rounds)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
