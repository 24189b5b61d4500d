"""Demonstrations without a teacher: a beam search on the emulator finds routes to the flag, and
each route is replayed through the trainer's env and recorded.

    python -m envs.route_search --record DIR [--task SuperMarioBros-1-1-v0] [--episodes 10]
                                [--noop-max 30] [--sticky 0] [--beam 8] [--seed 0]

Behaviour cloning gives PPO its head start from flag episodes (BENCHMARKS.md), but a fresh
machine has neither a trained checkpoint nor a person at a window. It has the emulator, which is
deterministic and hands out snapshots of its state (nes-py's ``dump_state``/``load_state``). So
from an episode's start the search keeps the ``--beam`` furthest-right living states, extends
each by a few agent steps of every rightward action (right, +A, +B, +A+B), and stops at the first
that reaches the flag. The route is then played from the same start through ``MarioEnv`` with the
trainers' options (``training_env_config``) and recorded with ``DemoRecorder``, exactly as
``envs.play`` records a person; a replay that does not reach the flag is an error, never a
demonstration. Episode k starts after the no-op count ``MarioEnv.reset(seed=seed + k)`` draws from
0..``--noop-max``, so the routes start at different timings of the game's enemies and clock. With
``--sticky 0.25`` the search plays through the evaluation protocol's sticky actions: each action
it records is the one it chose, and the env sometimes repeats the previous one instead, exactly as
the replay from the same seed will.
"""

import argparse
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from envs.actions import ACTION_SETS
from envs.config import EnvConfigError, training_env_config, validate_env_config
from envs.demonstrations import DemoEpisode, DemoError, DemoRecorder
from envs.mario_env import MarioEnv
from envs.tasks import task_info

__all__ = ["find_route", "main", "record_routes"]

SEARCHABLE_GAMES = ("smb1", "lost_levels")
"""Games whose emulator reports Mario's x position and the flag (SMB2 USA has no flag)."""
RIGHTWARD = (("right",), ("right", "A"), ("right", "B"), ("right", "A", "B"))
STEPS_PER_EXTENSION = 4
"""Agent steps each beam state is extended by: 16 frames at frame skip 4, short enough to time
a jump, long enough that a beam of 8 covers 1-1 in about a minute."""
ATTEMPTS = 3


class SearchError(RuntimeError):
    """No route found, or a found route that did not replay to the flag (one line)."""


PLAYER_X_SPEED, PLAYER_Y_SPEED = 0x0057, 0x009F
"""SMB1's RAM addresses of Mario's horizontal and vertical speed."""


@dataclass
class _Node:
    state: tuple
    actions: list[int]
    x: float
    place: tuple[int, ...]
    """Where Mario is and how he moves: many action sequences reach the same one (A held in
    the air changes nothing), and a beam of copies dies all at once at the next pit."""


def _rightward_actions(action_set: str) -> list[int]:
    combos = [sorted(c) for c in ACTION_SETS[action_set]]
    return [combos.index(sorted(c)) for c in RIGHTWARD if sorted(c) in combos]


def find_route(env: MarioEnv, *, beam: int, rng: random.Random) -> list[int] | None:
    """Agent actions that take Mario from the env's current state (just after ``reset``) to the
    flag, or None if every state in the beam dies first. Each extension is played by
    ``env.step`` itself, so frame skip and sticky actions (drawn from the env's own random
    stream, which a replay from the same seed draws again) are the trainer's."""
    actions = _rightward_actions(env.config.action_set)
    max_steps = env.config.max_episode_steps or 10_000
    nodes = [_Node(_save(env), [], 0.0, ())]
    while nodes and len(nodes[0].actions) < max_steps:
        children = []
        for node in nodes:
            for action in actions:
                _load(env, node.state)
                route, ended, info = list(node.actions), False, {}
                for _ in range(STEPS_PER_EXTENSION):
                    route.append(action)
                    _, _, terminated, truncated, info = env.step(action)
                    if terminated or truncated:
                        ended = True
                        break
                if ended and info["flag_get"]:
                    return route
                if not ended:
                    # A random fraction breaks ties between equal x positions without a bias.
                    x = info["x_pos"] + rng.random()
                    children.append(_Node(_save(env), route, x, _place(env)))
        nodes = _furthest_distinct(children, beam)
    return None


def _save(env: MarioEnv) -> tuple:
    """What decides the env's next steps: the emulator, the action a sticky step repeats, the
    random stream it draws from and the step count (the time-out). Frames and rewards are left
    out: only the replay's are recorded."""
    return (
        env._nes.dump_state(),
        env._previous,
        env._steps,
        env.np_random.bit_generator.state,
    )


def _load(env: MarioEnv, saved: tuple) -> None:
    state, env._previous, env._steps, env.np_random.bit_generator.state = saved
    env._nes.load_state(state)
    env._nes.done = False


def _place(env: MarioEnv) -> tuple[int, ...]:
    nes = env._nes
    return (nes._x_position, nes._y_position, *nes.ram[[PLAYER_X_SPEED, PLAYER_Y_SPEED]])


def _furthest_distinct(nodes: list[_Node], beam: int) -> list[_Node]:
    kept: dict[tuple[int, ...], _Node] = {}
    for node in sorted(nodes, key=lambda n: n.x, reverse=True):
        kept.setdefault(node.place, node)
        if len(kept) == beam:
            break
    return list(kept.values())


def record_routes(
    env: MarioEnv, recorder: DemoRecorder, *, episodes: int, beam: int, seed: int
) -> list[DemoEpisode]:
    """Find and record ``episodes`` routes, episode k from ``env.reset(seed=seed + k)``."""
    recorded = []
    for k in range(episodes):
        route = None
        for attempt in range(ATTEMPTS):
            env.reset(seed=seed + k)
            route = find_route(env, beam=beam, rng=random.Random(f"{seed + k}/{attempt}"))
            if route is not None:
                break
        if route is None:
            raise SearchError(
                f"no route to the flag from start seed {seed + k} with --beam {beam} "
                f"({ATTEMPTS} attempts); allowed: a wider --beam"
            )
        recorded.append(_replay(env, recorder, route, seed=seed + k))
    return recorded


def _replay(env: MarioEnv, recorder: DemoRecorder, route: list[int], *, seed: int) -> DemoEpisode:
    obs, info = env.reset(seed=seed)
    recorder.begin(obs)
    for action in route:
        obs, reward, terminated, truncated, info = env.step(action)
        recorder.step(action, reward, obs, terminated, truncated)
        if terminated or truncated:
            break
    if not info["flag_get"]:
        raise SearchError(
            f"the route found from start seed {seed} ended at x {info['x_pos']} without the flag "
            "when replayed (the emulator should be deterministic)"
        )
    episode = recorder.end(info)
    assert episode is not None
    return episode


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m envs.route_search", description=__doc__)
    parser.add_argument("--record", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--task", default="SuperMarioBros-1-1-v0", help="an SMB1 or Lost Levels stage"
    )
    parser.add_argument("--episodes", type=int, default=10, help="routes to record (>= 1)")
    parser.add_argument("--noop-max", type=int, default=30, help="start after 0..N no-ops")
    parser.add_argument(
        "--sticky",
        type=float,
        default=0.0,
        metavar="P",
        help="play the routes with sticky actions (the evaluation's 0.25; default 0)",
    )
    parser.add_argument("--beam", type=int, default=8, help="states kept per extension (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="episode k starts from seed + k")
    return parser


def _check(args: argparse.Namespace) -> None:
    for flag, value, low in (("--episodes", args.episodes, 1), ("--beam", args.beam, 1)):
        if value < low:
            raise DemoError(f"{flag} {value} is not allowed; allowed: an integer >= {low}")
    game = task_info(args.task).game
    if game not in SEARCHABLE_GAMES:
        raise DemoError(
            f"--task {args.task!r} is a {game} stage; allowed: a stage of "
            f"{' or '.join(SEARCHABLE_GAMES)} (the search follows x position to a flag)"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = validate_env_config(
            training_env_config(
                {"task": args.task, "noop_max": args.noop_max, "sticky_actions": args.sticky}
            )
        )
        _check(args)
        recorder = DemoRecorder(args.record, config, source=f"search:beam{args.beam}")
    except (EnvConfigError, DemoError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = MarioEnv(config)
    try:
        found = record_routes(env, recorder, episodes=args.episodes, beam=args.beam, seed=args.seed)
    except SearchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        env.close()
    steps = sum(e.steps for e in found)
    print(f"recorded {len(found)} routes to the flag ({steps} steps) to {os.fspath(args.record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
