"""``MarioEnv``: one lean gymnasium env doing frame skip, max-pool, grayscale, resize and stack.

One class instead of a stack of gymnasium wrappers, because every wrapper layer costs a Python call
per step and the emulator only gives us ~1,000 frames/s per core: a naive wrapper stack reached 62 %
of raw emulation on our 2-core machine (``benchmarks/env_throughput.py`` measures this loop).

nes-py hands out *views of one screen buffer*: every frame is overwritten by the next. So the
max-pool keeps its own copy of the second-to-last frame, each stacked frame is a fresh array from
OpenCV, and every observation returned is a new array that nothing else writes to.

Example::

    >>> env = MarioEnv({"frame_stack": 4, "resize": 84})
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype
    ((84, 84, 4), dtype('uint8'))
    >>> obs, reward, terminated, truncated, info = env.step(1)  # "right"
    >>> sorted(EPISODE_FACTS) == sorted(k for k in EPISODE_FACTS if k in info)
    True
    >>> env.close()
"""

from collections import deque
from typing import Any

import cv2
import gym_super_mario_bros
import gymnasium as gym
import numpy as np

from envs.actions import ACTION_SETS, action_bytes
from envs.config import MarioEnvConfig, validate_env_config

__all__ = ["EPISODE_FACTS", "MarioEnv"]

# The facts every step's info carries, so the episode recorder and the store treat all four games
# alike. Games that lack one report None (SMB2 USA has no clock, score or flag; SMB3 no coins).
# The ones stored per episode have their column's name (callbacks.records.EPISODE_FACT_COLUMNS).
EPISODE_FACTS = (
    "x_pos",
    "x_pos_max",
    "flag_get",
    "score",
    "coins",
    "time_left",
    "world",
    "stage",
    "life",
    "status",
    "progress",
    "progress_max",
    "clear",
    "death",
    "game",
    "task_id",
    "world_label",
)

# nes-py's per-frame reward bound; shaped rewards are clipped to the same range.
_REWARD_RANGE = (-15.0, 15.0)


class MarioEnv(gym.Env):
    """A Mario task (or a curriculum of tasks) as uint8 stacked frames and a discrete action set."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 60}

    def __init__(self, config: MarioEnvConfig | dict | None = None, *, render_mode=None):
        self.config = config if isinstance(config, MarioEnvConfig) else validate_env_config(config)
        self.render_mode = render_mode
        cfg = self.config
        self._bytes = action_bytes(cfg.action_set)
        self.action_space = gym.spaces.Discrete(len(self._bytes))
        self.observation_space = gym.spaces.Box(0, 255, cfg.observation_shape, np.uint8)
        self._weights = None
        if cfg.task_weights is not None:
            self._weights = np.asarray(cfg.task_weights) / sum(cfg.task_weights)
        self._nes_by_task: dict[str, gym.Env] = {}
        self._nes: Any = None  # the current task's nes-py emulator (reset() sets it)
        self._frames: deque = deque(maxlen=cfg.frame_stack)
        # Two reusable full-size buffers: the second-to-last frame of a skip and the last one.
        screen_shape = (240, 256) if cfg.grayscale else (240, 256, 3)
        self._pool = np.zeros(screen_shape, np.uint8)
        self._latest = np.zeros(screen_shape, np.uint8)
        self._screen_mode = "grayscale" if cfg.grayscale else "rgb_array_contiguous"
        self._steps = 0
        self._x_pos = 0
        self._x_pos_max = 0
        self._previous: int | None = None
        """The action last played, repeated by a sticky step (None before the first)."""

    def _emulator(self, task_id: str):
        """The task's emulator, created on first use and kept: ROM loading is the slow part."""
        nes = self._nes_by_task.get(task_id)
        if nes is None:
            # .unwrapped drops the package's TimeLimit (capped at 9,999,999 steps) and its checks.
            nes = gym_super_mario_bros.make(task_id).unwrapped
            self._nes_by_task[task_id] = nes
        return nes

    def _copy_screen(self, out: np.ndarray) -> np.ndarray:
        """Copy the emulator's screen into ``out`` natively (gray: 24 us; cv2 on the strided
        view: 190 us)."""
        return self._nes.observation(mode=self._screen_mode, output=out)

    def _to_frame(self, image: np.ndarray) -> np.ndarray:
        """Resize a (pooled, maybe gray) screen into a fresh uint8 array nothing else writes to.

        Anti-aliased like ``INTER_AREA`` but 7x cheaper: exact 2x box averages while the target
        is at most half the size (OpenCV's integer-scale fast path, 3 us), then bilinear for the
        last factor below 2. 240x256 -> 84x84 costs 10 us instead of 72 us (1.6 % of an agent
        step) and differs from ``INTER_AREA`` by 2 gray levels on average.
        """
        if self.config.resize is None:
            return image.copy()
        height, width = self.config.resize
        while image.shape[0] >= 2 * height and image.shape[1] >= 2 * width:
            half = (image.shape[1] // 2, image.shape[0] // 2)
            image = cv2.resize(image, half, interpolation=cv2.INTER_AREA)
        if image.shape[:2] == (height, width):
            return image
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)

    def _observation(self) -> np.ndarray:
        if self.config.grayscale:
            return np.stack(self._frames, axis=-1)
        return np.concatenate(self._frames, axis=-1)

    def _facts(self, info: dict) -> dict:
        """The compact, JSON-safe info we hand to RLlib (full nes info dicts bloat episodes)."""
        x_pos = int(info["x_pos"])
        self._x_pos_max = max(self._x_pos_max, x_pos)
        return {
            "x_pos": x_pos,
            "x_pos_max": self._x_pos_max,
            "flag_get": bool(info.get("flag_get", info["clear"])),
            "score": int(info["score"]) if "score" in info else None,
            "coins": int(info["coins"]) if "coins" in info else None,
            "time_left": int(info["time"]) if "time" in info else None,
            "world": int(info["world"]),
            "stage": int(info["stage"]),
            "life": int(info["life"]),
            "status": str(info["status"]) if "status" in info else None,
            "progress": int(info["progress"]),
            "progress_max": int(info["progress_max"]),
            "clear": bool(info["clear"]),
            "death": bool(info["death"]),
            "game": info["game"],
            "task_id": info["task_id"],
            "world_label": info["world_label"],
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        tasks = self.config.tasks
        if len(tasks) == 1:
            task_id = tasks[0]
        else:
            task_id = tasks[self.np_random.choice(len(tasks), p=self._weights)]
        self._nes = self._emulator(task_id)
        nes_seed = None if seed is None else int(self.np_random.integers(2**31))
        _, info = self._nes.reset(seed=nes_seed)
        self._steps = 0
        self._x_pos_max = 0
        facts = self._facts(info)
        self._x_pos = facts["x_pos"]
        frame = self._to_frame(self._copy_screen(self._latest))
        for _ in range(self.config.frame_stack):
            self._frames.append(frame)
        self._previous = None
        for _ in range(self._draw(self.config.noop_max + 1) if self.config.noop_max else 0):
            _, _, terminated, truncated, facts = self._advance(0)
            if terminated or truncated:  # only a noop_max near the clock gets here; play on
                return self.reset(seed=None, options=options)
        return self._observation(), facts

    def _draw(self, high: int) -> int:
        return int(self.np_random.integers(high))

    def step(self, action):
        """One agent step; with ``sticky_actions`` it may repeat the previous action instead."""
        action = int(action)
        sticky = self.config.sticky_actions
        if sticky and self._previous is not None and self.np_random.random() < sticky:
            action = self._previous
        self._previous = action
        return self._advance(action)

    def _advance(self, action: int):
        """``frame_skip`` emulator frames of one action: pooled frame, reward, ends, facts."""
        cfg = self.config
        button = self._bytes[action]
        nes = self._nes
        reward = 0.0
        terminated = truncated = False
        info: Any = None
        for i in range(cfg.frame_skip):
            if cfg.reward_weights or i == cfg.frame_skip - 1:
                _, frame_reward, terminated, truncated, info = nes.step(button)
                if cfg.reward_weights:
                    frame_reward = _shaped(info["reward_components"], cfg.reward_weights)
            else:
                frame_reward, terminated, truncated, info = _advance_without_info(nes, button)
            reward += frame_reward
            if terminated or truncated:
                break
            if i == cfg.frame_skip - 2:
                self._copy_screen(self._pool)
        latest = self._copy_screen(self._latest)
        if cfg.frame_skip > 1 and not (terminated or truncated):
            np.maximum(self._pool, latest, out=latest)
        self._frames.append(self._to_frame(latest))
        facts = self._facts(info)
        if cfg.idle_penalty and facts["x_pos"] <= self._x_pos:
            reward -= cfg.idle_penalty
        if cfg.flag_bonus and terminated and facts["flag_get"]:
            reward += cfg.flag_bonus
        self._x_pos = facts["x_pos"]
        self._steps += 1
        if cfg.max_episode_steps is not None and self._steps >= cfg.max_episode_steps:
            truncated = truncated or not terminated
        return self._observation(), reward * cfg.reward_scale, terminated, truncated, facts

    def render(self):
        """A full-colour copy of the current screen (a copy: the emulator reuses its buffer)."""
        if self.render_mode != "rgb_array" or self._nes is None:
            return None
        return self._nes.screen.copy()

    def get_action_meanings(self) -> list[str]:
        return [" ".join(combo) for combo in ACTION_SETS[self.config.action_set]]

    def close(self):
        for nes in self._nes_by_task.values():
            nes.close()
        self._nes_by_task.clear()
        self._nes = None


def _advance_without_info(nes, button: int) -> tuple[float, bool, bool, dict | None]:
    """``NESEnv.step`` for a frame whose info nobody reads: the same hooks in the same order,
    minus the ~40-key info dict the game builds (14 us of a 900 us frame; built only when the
    episode ends here). nes-py 9.0's ``NESEnv.step`` is the reference; ``tests/test_benchmarks``
    checks both paths give identical observations, rewards and infos in all four games.
    """
    if nes.done:
        raise ValueError("cannot step in a done environment! call `reset`")
    nes._env.frame_advance(button)
    reward = float(nes._get_reward())
    terminated = bool(nes._get_terminated())
    truncated = bool(nes._get_truncated())
    done = nes.done = terminated or truncated
    info = nes._get_info() if done else None
    nes._did_step(done)
    low, high = nes.reward_range
    return min(high, max(low, reward)), terminated, truncated, info


def _shaped(components: dict, weights: dict) -> float:
    total = sum(value * weights.get(name, 1.0) for name, value in components.items())
    return min(_REWARD_RANGE[1], max(_REWARD_RANGE[0], total))
