"""A person plays Mario in a window, and every agent step is recorded as a demonstration.

    python -m envs.play --record DIR [--task SuperMarioBros-1-1-v0] [--player NAME] [--episodes 1]

Keys: arrows (right, left, down, up), X jumps (A), Z runs (B); Escape ends the recording. The
window shows the full-colour screen while the recorder keeps what a trainer sees: the ``mario``
env with the trainers' options (``envs.config.training_env_config``: SMB1's right-only actions,
frame skip 4, stacked 84x84 frames), stepped at the game's real speed (60 frames/s, so one agent
step every ``frame_skip`` frames). The keys held at each agent step choose its action: the action
of the set whose buttons are the held ones, else the one sharing the most of them (right-only has
no ``left``: holding it plays NOOP). An episode Escape cuts short is kept, its last step marked
truncated, so no play is lost.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from envs.actions import ACTION_SETS
from envs.config import EnvConfigError, training_env_config, validate_env_config
from envs.demonstrations import DemoError, DemoRecorder
from envs.mario_env import MarioEnv

__all__ = ["KEYS", "action_for", "main"]

FRAMES_PER_SECOND = 60
WINDOW_SCALE = 2
KEYS = {"RIGHT": "right", "LEFT": "left", "DOWN": "down", "UP": "up", "X": "A", "Z": "B"}
"""pyglet key names and the NES buttons they hold."""


def action_for(buttons: set[str], action_set: str) -> int:
    """The index of the action in ``action_set`` that best plays the held ``buttons``:
    most buttons shared, fewest extra; ties go to the lower index (NOOP first)."""

    def score(index: int) -> tuple[int, int]:
        combo = set(ACTION_SETS[action_set][index]) - {"NOOP"}
        return (len(combo & buttons) - len(combo - buttons), -index)

    return max(range(len(ACTION_SETS[action_set])), key=score)


class _Window:
    """nes-py's keyboard-monitoring ``ImageViewer``, with pyglet's key codes mapped to buttons."""

    def __init__(self, caption: str):
        from nes_py._image_viewer import ImageViewer
        from pyglet.window import key

        self._buttons = {getattr(key, name): button for name, button in KEYS.items()}
        self.viewer = ImageViewer(
            caption,
            240 * WINDOW_SCALE,
            256 * WINDOW_SCALE,
            monitor_keyboard=True,
            relevant_keys=set(self._buttons),
        )

    def show(self, frame) -> bool:
        """Draw ``frame`` and read the keyboard; False once the player asked to stop."""
        self.viewer.show(frame)
        window = self.viewer._window
        return not (self.viewer.is_escape_pressed or window is None or window.has_exit)

    def buttons(self) -> set[str]:
        return {self._buttons[k] for k in self.viewer.pressed_keys}

    def close(self) -> None:
        self.viewer.close()


def play(env: MarioEnv, window: _Window, recorder: DemoRecorder, *, episodes: int) -> int:
    """Let the player play up to ``episodes`` episodes; return how many were recorded."""
    period, played = env.config.frame_skip / FRAMES_PER_SECOND, 0
    while played < episodes:
        obs, info = env.reset()
        recorder.begin(obs)
        done, deadline = False, time.monotonic()
        try:
            while not done:
                if not window.show(env.render()):
                    recorder.end(info, cut=True)
                    return played + 1
                action = action_for(window.buttons(), env.config.action_set)
                obs, reward, terminated, truncated, info = env.step(action)
                recorder.step(action, reward, obs, terminated, truncated)
                done = terminated or truncated
                deadline += period
                time.sleep(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            recorder.end(info, cut=True)
            raise
        recorder.end(info)
        played += 1
    return played


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m envs.play", description=__doc__)
    parser.add_argument("--record", type=Path, required=True, metavar="DIR")
    parser.add_argument("--task", default="SuperMarioBros-1-1-v0", help="registered task id")
    parser.add_argument("--player", default="person", help="who plays (stored as the source)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play (>= 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.episodes < 1:
            raise DemoError(f"--episodes {args.episodes} is not allowed; allowed: an integer >= 1")
        config = validate_env_config(training_env_config({"task": args.task}))
        recorder = DemoRecorder(args.record, config, source=f"person:{args.player}")
    except (EnvConfigError, DemoError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = MarioEnv(config, render_mode="rgb_array")
    window = _Window(f"mario-sweeps: recording {args.task} to {os.fspath(args.record)}")
    before = len(recorder.episodes)
    try:
        play(env, window, recorder, episodes=args.episodes)
    except KeyboardInterrupt:
        pass
    finally:
        window.close()
        env.close()
    recorded = recorder.episodes[before:]
    steps = sum(e.steps for e in recorded)
    print(f"recorded {len(recorded)} episodes ({steps} steps) to {os.fspath(args.record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
