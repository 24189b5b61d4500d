"""Wrapped-env throughput next to raw NES emulation, in one process and one run.

Raw emulation is ``nes_py.speedtest`` (the emulator alone, random buttons); the wrapped env is our
``MarioEnv`` with its defaults (frame skip 4, max-pool, gray, 84x84, stack 4), random actions.
Runs alternate (raw, wrapped, raw, wrapped, ...) so machine noise hits both alike; the ratio uses
the medians. One line per game with ``--all-games``.

    python benchmarks/env_throughput.py [--seconds 5] [--rounds 3] [--all-games] [--json]
"""

import argparse
import json
import statistics
import time

import gym_super_mario_bros
import numpy as np
from nes_py import speedtest

from envs import MarioEnv

GAME_TASKS = {
    "smb1": "SuperMarioBros-1-1-v0",
    "lost_levels": "SuperMarioBros2-1-1-v0",
    "smb2_usa": "SuperMarioBros2USA-1-1-v0",
    "smb3": "SuperMarioBros3-1-1-v0",
}


def raw_frames_per_second(rom: str, seconds: float) -> float:
    """Frames/s of the bare emulator, measured by nes-py's own speedtest."""
    steps = max(200, int(seconds * 1100))
    result = speedtest.run_benchmark(rom=rom, steps=steps, warmup_steps=100, progress=False)
    return result.frames_per_second


def random_play(env, seconds: float, rng: np.random.Generator) -> tuple[int, float]:
    """Steps ``env`` (already reset) with random actions for ``seconds``: (steps, elapsed s)."""
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        steps += 1
        if terminated or truncated:
            env.reset()
    return steps, time.perf_counter() - start


def wrapped_steps_per_second(task: str, seconds: float, seed: int = 0, env_class=MarioEnv) -> float:
    """Agent steps/s of ``env_class`` (``MarioEnv``) on ``task`` with random actions."""
    env = env_class({"task": task})
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(25):  # warm-up, as the speedtest does
        env.step(int(rng.integers(env.action_space.n)))
    steps, elapsed = random_play(env, seconds, rng)
    env.close()
    return steps / elapsed


class _TimedEmulator:
    """Stands in for an env's native emulator and times its ``frame_advance`` calls."""

    def __init__(self, native):
        self.native = native
        self.seconds = 0.0
        self.frames = 0

    def frame_advance(self, action) -> None:
        start = time.perf_counter()
        self.native.frame_advance(action)
        self.seconds += time.perf_counter() - start
        self.frames += 1

    def __getattr__(self, name):
        return getattr(self.native, name)


def emulator_share(task: str, seconds: float, seed: int = 0) -> dict:
    """Where a wrapped step's time goes: the share spent emulating, and µs per emulated frame.

    Compare ``us_per_frame`` with 1e6 / raw frames/s: frames of real play cost the emulator more
    than the speedtest's random-button frames, which no wrapper can win back.
    """
    env = MarioEnv({"task": task})
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    nes = env._nes  # one task: every reset reuses this emulator
    clock = nes._env = _TimedEmulator(nes._env)
    steps, elapsed = random_play(env, seconds, rng)
    nes._env = clock.native
    env.close()
    return {
        "emulator_share": clock.seconds / elapsed,
        "us_per_frame": 1e6 * clock.seconds / clock.frames,
        "frames_per_step": clock.frames / steps,
    }


def measure(game: str, *, seconds: float, rounds: int) -> dict:
    task = GAME_TASKS[game]
    rom = gym_super_mario_bros.make(task).unwrapped._rom_path
    frame_skip = MarioEnv({"task": task}).config.frame_skip
    raw, wrapped = [], []
    for _ in range(rounds):
        raw.append(raw_frames_per_second(rom, seconds))
        wrapped.append(wrapped_steps_per_second(task, seconds))
    raw_fps, env_sps = statistics.median(raw), statistics.median(wrapped)
    ceiling = raw_fps / frame_skip
    return {
        "game": game,
        "task": task,
        "raw_frames_per_s": round(raw_fps, 1),
        "raw_agent_steps_per_s": round(ceiling, 1),
        "wrapped_agent_steps_per_s": round(env_sps, 1),
        "ratio": round(env_sps / ceiling, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--all-games", action="store_true", help="one line per game")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    games = list(GAME_TASKS) if args.all_games else ["smb1"]
    rows = [measure(g, seconds=args.seconds, rounds=args.rounds) for g in games]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'game':<12} {'raw frames/s':>12} {'raw/skip':>9} {'wrapped steps/s':>16} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['game']:<12} {r['raw_frames_per_s']:>12.0f} {r['raw_agent_steps_per_s']:>9.0f} "
            f"{r['wrapped_agent_steps_per_s']:>16.0f} {r['ratio']:>6.1%}"
        )


if __name__ == "__main__":
    main()
