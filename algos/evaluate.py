"""Play a trained checkpoint: a table of episodes and a gameplay video of the best one.

    python -m algos.evaluate [CHECKPOINT] [--episodes 20] [--sample] [--sticky 0.25] [--noop-max 30]
                             [--tasks ID ...] [--video out.mp4] [--record-demos DIR [--only-flags]]

The emulator is deterministic, so a greedy policy from the same start replays one episode: five
greedy episodes of a 235k-step checkpoint were identical (x_pos 314). Every episode therefore
starts after a random number of no-op steps (0..``noop_max``) and repeats its previous action with
probability ``sticky`` (sticky actions, Machado et al. 2018; here per agent step of 4 frames).
Both are seeded per episode, so an evaluation is reproducible and its episodes differ. With no
CHECKPOINT it plays the pretrained agent shipped in ``algos/pretrained`` (BENCHMARKS.md).

``--tasks`` evaluates on tasks the agent was not trained on (held-out stages, another game) while
keeping every other env option of the checkpoint, so generalisation is measured like for like.
Video frames are full-colour copies of the emulator screen (nes-py overwrites its one buffer each
frame, which is why uncopied recordings come out as one static frame); each episode streams to a
temporary file and the best one is kept, so long episodes cost no memory.

``--record-demos DIR`` makes the checkpoint a teacher: its episodes (from the first step it plays,
after the no-op start) are written as demonstrations RLlib's offline data reads
(``envs.demonstrations``); ``--only-flags`` keeps those that reached the flag.
"""

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from ray.rllib.core.columns import Columns

from algos.checkpoints import PRETRAINED, CheckpointError, LoadedPolicy, load_policy
from envs import EnvConfigError, MarioEnv, validate_env_config
from envs.config import MAX_NOOPS
from envs.demonstrations import DemoError, DemoRecorder

__all__ = ["EpisodeResult", "Protocol", "evaluate", "main"]

VIDEO_FPS = 15  # one frame per agent step at frame skip 4 = real game speed / 4 x 60 fps
VIDEO_SUFFIXES = (".mp4", ".gif")
MAX_SEED = 2**31 - 1  # as the ``seed`` hyperparameter: seeds numpy, torch and the emulator


@dataclass(frozen=True)
class Protocol:
    """How an evaluation plays: what makes its episodes differ on a deterministic emulator."""

    sample: bool = False
    """Sample actions from the policy (default: its most likely action)."""
    sticky: float = 0.25
    """Chance that an agent step repeats the previous action instead of the policy's."""
    noop_max: int = 30
    """Each episode starts after a uniform 0..noop_max no-op steps (action 0 is NOOP)."""

    def __post_init__(self):
        if not 0 <= self.sticky < 1:
            raise ValueError(f"sticky {self.sticky} is not allowed; allowed: a number in [0, 1)")
        if isinstance(self.noop_max, bool) or not 0 <= self.noop_max <= MAX_NOOPS:
            raise ValueError(
                f"noop_max {self.noop_max} is not allowed; allowed: an integer in [0, {MAX_NOOPS}]"
            )

    def describe(self) -> str:
        """What a table prints: e.g. ``greedy, sticky 0.25, 0-30 no-op starts``."""
        return (
            f"{'sampled' if self.sample else 'greedy'}, sticky {self.sticky:g}, "
            f"0-{self.noop_max} no-op starts"
        )


@dataclass
class EpisodeResult:
    episode: int
    task_id: str
    total_return: float
    x_pos: int
    flag_get: bool
    length: int
    frames: int
    noops: int = 0
    """No-op steps before the policy acted (the protocol's random start)."""


def _act(policy: LoadedPolicy, obs: np.ndarray, *, sample: bool, rng: np.random.Generator) -> int:
    with torch.no_grad():
        out = policy.module.forward_inference({Columns.OBS: torch.from_numpy(obs[None])})
    if Columns.ACTIONS in out:  # DQN picks greedily itself
        return int(out[Columns.ACTIONS][0])
    logits = out[Columns.ACTION_DIST_INPUTS][0].double().numpy()
    if not sample:
        return int(logits.argmax())
    probs = np.exp(logits - logits.max())
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def _writer(path: Path):
    """An mp4 writer when imageio-ffmpeg is present, else a GIF writer."""
    if path.suffix == ".gif":
        return imageio.get_writer(path, mode="I", duration=1 / VIDEO_FPS)
    return imageio.get_writer(path, fps=VIDEO_FPS, codec="libx264", macro_block_size=8)


def _video_problem(video: Path) -> str | None:
    """Why ``video`` cannot be written, or None: checked before playing, not after every episode."""
    if video.suffix not in VIDEO_SUFFIXES:
        return f"it does not end in {' or '.join(VIDEO_SUFFIXES)}"
    if video.is_dir():
        return "it is a directory"
    # Missing folders are created at the end, so the nearest existing one must take a new file.
    folder = video.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{os.fspath(folder)} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"{os.fspath(folder)} does not take new files ({err.strerror})"
    return None


def _video_error(video: Path, problem: str) -> str:
    return (
        f"--video {os.fspath(video)!r} is not allowed: {problem}; allowed: a "
        f"{' or '.join(VIDEO_SUFFIXES)} file path in a writable directory"
    )


def evaluate(
    policy: LoadedPolicy,
    *,
    episodes: int,
    protocol: Protocol = Protocol(),
    tasks: list[str] | None = None,
    video: Path | None = None,
    seed: int = 0,
    demos: DemoRecorder | None = None,
) -> list[EpisodeResult]:
    """Play ``episodes`` episodes under ``protocol``; write the best (by x_pos, then return) to
    ``video`` and the episodes to ``demos``. Episode ``i`` is seeded ``seed + i`` (its start,
    its sticky draws, its samples)."""
    problem = None if video is None else _video_problem(video)
    if video is not None and problem is not None:
        raise ValueError(_video_error(video, problem))
    env = _evaluation_env(policy, tasks)
    results: list[EpisodeResult] = []
    workdir = Path(tempfile.mkdtemp(prefix="mario-eval-"))
    best_key, best_file = None, None
    try:
        for episode in range(episodes):
            clip = workdir / f"episode_{episode}{video.suffix}" if video else None
            result = _play(
                env, policy, protocol, episode=episode, seed=seed + episode, clip=clip, demos=demos
            )
            results.append(result)
            rank = (result.x_pos, result.total_return)
            if clip is not None and (best_key is None or rank > best_key):
                best_key, best_file = rank, clip
        if video is not None and best_file is not None:
            video.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(best_file, video)
    finally:
        env.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def _evaluation_env(policy: LoadedPolicy, tasks: list[str] | None) -> MarioEnv:
    """The env the policy trained on (or on ``tasks``), with its action set whatever the game."""
    env_config = dict(policy.env_config)
    # The policy's output layer fixes the action set: keep it whatever game is evaluated.
    env_config["action_set"] = validate_env_config(env_config).action_set
    # The protocol alone decides sticky actions and no-op starts: training's would stack on it.
    env_config.pop("sticky_actions", None)
    env_config.pop("noop_max", None)
    if tasks:
        for key in ("task", "tasks", "task_weights", "game", "world", "stage"):
            env_config.pop(key, None)
        env_config["tasks"] = list(tasks)
    env = MarioEnv(validate_env_config(env_config), render_mode="rgb_array")
    if env.get_action_meanings()[0] != "NOOP":
        env.close()
        raise ValueError(f"action set {env_config['action_set']!r} has no NOOP at index 0")
    return env


def _play(
    env: MarioEnv,
    policy: LoadedPolicy,
    protocol: Protocol,
    *,
    episode: int,
    seed: int,
    clip: Path | None,
    demos: DemoRecorder | None,
) -> EpisodeResult:
    """One episode: ``noops`` NOOP steps, then the policy, each step repeating the previous
    action with the protocol's sticky chance; every frame written to ``clip`` if given, every
    step after the no-op start (the policy's play, sticky repeats included) to ``demos``."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    writer = _writer(clip) if clip is not None else None
    total, length, frames, done = 0.0, 0, 0, False
    noops, action = int(rng.integers(protocol.noop_max + 1)), 0
    while not done:
        if writer is not None:
            writer.append_data(env.render())
            frames += 1
        if length >= noops and not (length > noops and rng.random() < protocol.sticky):
            action = _act(policy, obs, sample=protocol.sample, rng=rng)
        if demos is not None and length == noops:
            demos.begin(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        if demos is not None and length >= noops:
            demos.step(action, reward, obs, terminated, truncated)
        total += reward
        length += 1
        done = terminated or truncated
    if demos is not None:
        demos.end(info)
    if writer is not None:
        writer.append_data(env.render())
        writer.close()
        frames += 1
    return EpisodeResult(
        episode,
        info["task_id"],
        total,
        info["x_pos_max"],
        info["flag_get"],
        length,
        frames,
        min(noops, length),
    )


def format_table(results: list[EpisodeResult], protocol: Protocol) -> str:
    lines = [
        f"{len(results)} episodes, {protocol.describe()}",
        f"{'episode':>7}  {'task':<26} {'no-ops':>6} {'return':>9} {'x_pos':>6} {'flag':>5} "
        f"{'length':>7}",
    ]
    for r in results:
        lines.append(
            f"{r.episode:>7}  {r.task_id:<26} {r.noops:>6} {r.total_return:>9.2f} {r.x_pos:>6} "
            f"{'yes' if r.flag_get else 'no':>5} {r.length:>7}"
        )
    n = len(results)
    lines.append(
        f"{'mean':>7}  {'':<26} {'':>6} {sum(r.total_return for r in results) / n:>9.2f} "
        f"{sum(r.x_pos for r in results) / n:>6.0f} {sum(r.flag_get for r in results) / n:>5.0%} "
        f"{sum(r.length for r in results) / n:>7.0f}"
    )
    return "\n".join(lines)


MAX_EPISODES = 10_000
"""About 12 hours of play at ~4 s an episode: more is a typo."""


class _ArgumentError(Exception):
    """A bad command line, reported as one line (no usage block) like every other error here."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _ArgumentError(message)


def int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high] (no upper end when high is None).

    Not ``choices=range(...)``: ``--help`` would print every value of the range.
    """
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not allowed; allowed: {allowed}")
        return value

    return parse


def _float_in(low: float, high: float):
    """An argparse type: a finite number in [low, high)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not low <= value < high:
            raise argparse.ArgumentTypeError(
                f"{text} is not allowed; allowed: a number in [{low:g}, {high:g})"
            )
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m algos.evaluate",
        description="Play a trained Mario checkpoint, print a table and save the best episode.",
    )
    parser.add_argument(
        "checkpoint",
        nargs="?",
        default=os.fspath(PRETRAINED),
        help="RLlib checkpoint directory, e.g. a Tune trial's (default: the pretrained agent, "
        "algos/pretrained/smb1-1-1-ppo)",
    )
    parser.add_argument(
        "--episodes", type=int_in(1, MAX_EPISODES), default=20, help="episodes to play"
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="sample actions from the policy (default: deterministic, the most likely action)",
    )
    parser.add_argument(
        "--sticky",
        type=_float_in(0.0, 1.0),
        default=Protocol.sticky,
        help="chance an agent step repeats the previous action (default %(default)s; 0 = off)",
    )
    parser.add_argument(
        "--noop-max",
        type=int_in(0, MAX_NOOPS),
        default=Protocol.noop_max,
        help="each episode starts after 0..N random no-op steps (default %(default)s; 0 = off)",
    )
    parser.add_argument(
        "--tasks", nargs="+", metavar="TASK_ID", help="evaluate on these task ids instead"
    )
    parser.add_argument(
        "--video", type=Path, help="write the best episode here (.mp4, or .gif without ffmpeg)"
    )
    parser.add_argument(
        "--seed", type=int_in(0, MAX_SEED), default=0, help="seed of the first episode"
    )
    parser.add_argument(
        "--record-demos",
        type=Path,
        metavar="DIR",
        help="record the episodes as demonstrations (RLlib offline Parquet + manifest.json)",
    )
    parser.add_argument(
        "--only-flags",
        action="store_true",
        help="with --record-demos: keep only the episodes that reached the flag",
    )
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The flags, checked cheaply first: a bad one fails in a second, not after loading or
    playing (``_ArgumentError``)."""
    args = _parser().parse_args(argv)
    problem = None if args.video is None else _video_problem(args.video)
    if problem is not None:
        raise _ArgumentError(_video_error(args.video, problem))
    if args.tasks:
        try:
            validate_env_config({"tasks": args.tasks, "action_set": "simple"})
        except EnvConfigError as err:
            raise _ArgumentError(f"--tasks: {err}") from None
    if args.only_flags and args.record_demos is None:
        raise _ArgumentError("--only-flags is allowed only with --record-demos DIR")
    return args


def _recorder(args: argparse.Namespace, policy: LoadedPolicy) -> DemoRecorder | None:
    """The demonstration recorder ``--record-demos`` asks for, checked before anything plays."""
    if args.record_demos is None:
        return None
    return DemoRecorder(
        args.record_demos,
        validate_env_config(policy.env_config),
        source=f"checkpoint:{os.path.abspath(args.checkpoint)}",
        only_flags=args.only_flags,
    )


def _recorded(demos: DemoRecorder, before: int) -> str:
    kept = demos.episodes[before:]
    steps = sum(e.steps for e in kept)
    which = " that reached the flag" if demos.only_flags else ""
    return f"recorded {len(kept)} episodes{which} ({steps} steps) to {os.fspath(demos.directory)}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except _ArgumentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        policy = load_policy(args.checkpoint)
        demos = _recorder(args, policy)
        before = 0 if demos is None else len(demos.episodes)
        protocol = Protocol(sample=args.sample, sticky=args.sticky, noop_max=args.noop_max)
        results = evaluate(
            policy,
            episodes=args.episodes,
            protocol=protocol,
            tasks=args.tasks,
            video=args.video,
            seed=args.seed,
            demos=demos,
        )
    except (CheckpointError, EnvConfigError, DemoError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no evaluation printed", file=sys.stderr)
        return 130
    print(f"{policy.algo} checkpoint {args.checkpoint}")
    print(format_table(results, protocol))
    if args.video is not None:
        print(f"best episode video: {os.fspath(args.video)}")
    if demos is not None:
        print(_recorded(demos, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
