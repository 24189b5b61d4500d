"""The ``env_config`` of the ``"mario"`` env: every option, its default and its validation.

RLlib hands env creators a plain dict (an ``EnvContext``). ``validate_env_config`` turns it into
a frozen ``MarioEnvConfig`` once, at the boundary, and raises ``EnvConfigError`` — one line naming
the key, the bad value and what is allowed — for anything else. The env itself trusts its config.

Choosing what to play (the default is SMB1 World 1-1):

- ``task``: one registered id, e.g. ``"SuperMarioBros3-1-1-v0"``;
- ``game`` + ``world`` + ``stage``: e.g. ``{"game": "lost_levels", "world": "A", "stage": 1}``;
- ``tasks``: a curriculum sampled per episode — registered ids and/or ``[world, stage]`` pairs of
  ``game`` — with optional ``task_weights`` (relative, need not sum to 1).

Reward shaping reuses the per-frame ``info["reward_components"]`` the 9.x env reports: a weight per
component (``progress`` is the forward-progress bonus, ``coins``/``powerup`` the item rewards,
``death`` the life-loss penalty of -25) plus an ``idle_penalty`` for agent steps without forward
progress, and a ``flag_bonus`` on the step that reaches the flag. With every weight 1, no idle
penalty and no flag bonus the reward is exactly the env's own.
"""

import math
from dataclasses import dataclass, field, fields
from typing import Any

from envs.actions import ACTION_SETS, DEFAULT_ACTION_SET
from envs.tasks import GAMES, TaskError, resolve_task, task_info

__all__ = [
    "EnvConfigError",
    "MarioEnvConfig",
    "REWARD_COMPONENTS",
    "MARIO_ENV_DEFAULTS",
    "training_env_config",
    "validate_env_config",
]

# Union of the component names the four games report (SMB2 USA: collectibles, health).
REWARD_COMPONENTS = (
    "progress",
    "time",
    "score",
    "coins",
    "powerup",
    "completion",
    "death",
    "collectibles",
    "health",
)


class EnvConfigError(ValueError):
    """An ``env_config`` value the Mario env cannot honour."""


@dataclass(frozen=True)
class MarioEnvConfig:
    """Validated env options. Build it with ``validate_env_config``, not directly."""

    tasks: tuple[str, ...] = ("SuperMarioBros-1-1-v0",)
    """Canonical env ids played; one is sampled per episode when there are several."""
    task_weights: tuple[float, ...] | None = None
    """Relative sampling weights of ``tasks`` (None: uniform)."""
    action_set: str = "simple"
    """Name of the discrete action set (see ``envs.actions.ACTION_SETS``)."""
    frame_skip: int = 4
    """Emulator frames per agent step; the observation is the max of the last two."""
    grayscale: bool = True
    resize: tuple[int, int] | None = (84, 84)
    """(height, width) of each frame after resizing; None keeps 240x256."""
    frame_stack: int = 4
    max_episode_steps: int | None = 4500
    """Agent steps before truncation (SMB2 USA has no clock, so an idle agent never dies)."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    idle_penalty: float = 0.0
    """Subtracted on every agent step in which Mario's x position did not increase."""
    flag_bonus: float = 0.0
    """Added on the agent step that ends an episode at the flag, after nes-py's per-frame clip
    to (-15, 15), which otherwise cuts the game's +50 for completion to at most 15."""
    reward_scale: float = 1.0
    """Applied last, after weights and idle penalty (PPO likes returns near unit scale)."""
    sticky_actions: float = 0.0
    """Chance that an agent step repeats the previous action instead of the one asked for
    (Machado et al. 2018): the emulator is deterministic, so without it a policy can learn a
    frame-exact route that the evaluation protocol (sticky 0.25) breaks."""
    noop_max: int = 0
    """Each episode starts after a uniform 0..noop_max NOOP agent steps (random starts)."""

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        height, width = self.resize or (240, 256)
        return (height, width, self.frame_stack * (1 if self.grayscale else 3))


_KEYS = ("task", "game", "world", "stage") + tuple(f.name for f in fields(MarioEnvConfig))

# Upper bounds catch typos before an env runner allocates for them (resize=100000 asked for
# 298 GiB). The NES screen is 240x256: 1024 is 4x its wider side, past which upscaling adds no
# information and only multiplies memory (a 1024x1024 frame is 1 MiB per stacked channel).
MAX_RESIZE = 1024
# 64 frames of frame skip is over a second of game per action; 64 stacked frames is 16x the
# usual 4. Neither is a sensible setting, both are far from costing a crash.
MAX_FRAME_SKIP = 64
MAX_FRAME_STACK = 64
# 10**7 agent steps is about 46 hours of play at frame skip 4: no episode needs more, and the
# count stays exact in every integer column (bigint) and float64 metric it is written to.
MAX_EPISODE_STEPS = 10**7
# 400 agent steps is 1,600 frames, a quarter of 1-1's clock: any more is waiting, not a random
# start. The evaluation protocol (algos.evaluate.Protocol) has the same bound.
MAX_NOOPS = 400


def _fail(key: str, value: Any, allowed: str) -> EnvConfigError:
    return EnvConfigError(f"env_config[{key!r}]={value!r} is invalid; allowed: {allowed}")


def _int(
    cfg: dict, key: str, default: int | None, *, minimum: int, maximum: int, none_ok: bool = False
):
    value = cfg.get(key, default)
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        allowed = f"an integer >= {minimum} and <= {maximum}" + (" or None" if none_ok else "")
        raise _fail(key, value, allowed)
    return value


def _is_finite_number(value: Any) -> bool:
    """JSON parses NaN and Infinity, and ``nan < 0`` is False: range checks alone let them in."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _float(cfg: dict, key: str, default: float, *, minimum: float) -> float:
    value = cfg.get(key, default)
    if not _is_finite_number(value) or value < minimum:
        raise _fail(key, value, f"a finite number >= {minimum}")
    return float(value)


def _probability(cfg: dict, key: str) -> float:
    value = cfg.get(key, 0.0)
    if not _is_finite_number(value) or not 0 <= value < 1:
        raise _fail(key, value, "a number in [0, 1)")
    return float(value)


def _is_world(value: Any) -> bool:
    """Worlds and stages must be scalars: a list fails deep in the task lookup as unhashable."""
    return not isinstance(value, bool) and isinstance(value, int | str)


def _is_stage(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def _resolve_tasks(cfg: dict) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    game = cfg.get("game", "smb1")
    if not isinstance(game, str) or game not in GAMES:
        raise _fail("game", game, ", ".join(GAMES))
    chosen = [k for k in ("task", "tasks") if k in cfg]
    if len(chosen) > 1 or (chosen and ("world" in cfg or "stage" in cfg)):
        raise EnvConfigError(
            f"env_config sets {sorted(set(chosen) | ({'world', 'stage'} & set(cfg)))}; "
            "allowed: exactly one of 'task', 'tasks', or 'world'+'stage'"
        )
    if cfg.get("task_weights") is not None and "tasks" not in cfg:
        # Weights of a single task mean nothing; dropping them silently hides a broken curriculum.
        raise _fail("task_weights", cfg["task_weights"], "only together with env_config['tasks']")
    try:
        if "task" in cfg:
            if not isinstance(cfg["task"], str):
                raise _fail("task", cfg["task"], "a registered task id string")
            return (task_info(cfg["task"]).task_id,), None
        if "tasks" not in cfg:
            world, stage = cfg.get("world", 1), cfg.get("stage", 1)
            if not _is_world(world):
                raise _fail("world", world, "an integer, or a label string (lost_levels: 'A'-'D')")
            if not _is_stage(stage):
                raise _fail("stage", stage, "an integer")
            return (resolve_task(game=game, world=world, stage=stage),), None
        entries = cfg["tasks"]
        if not isinstance(entries, list | tuple) or not entries:
            raise _fail("tasks", entries, "a non-empty list of task ids or [world, stage] pairs")
        tasks = []
        for entry in entries:
            if isinstance(entry, str):
                tasks.append(task_info(entry).task_id)
            elif (
                isinstance(entry, list | tuple)
                and len(entry) == 2
                and _is_world(entry[0])
                and _is_stage(entry[1])
            ):
                tasks.append(resolve_task(game=game, world=entry[0], stage=entry[1]))
            else:
                pair = "a [world, stage] pair (world an integer or label string, stage an integer)"
                raise _fail("tasks", entry, f"a task id string or {pair}")
    except TaskError as err:
        raise EnvConfigError(f"env_config: {err}") from None
    weights = cfg.get("task_weights")
    if weights is not None:
        if (
            not isinstance(weights, list | tuple)
            or len(weights) != len(tasks)
            or any(not _is_finite_number(w) or w < 0 for w in weights)
            or not 0 < sum(weights) < math.inf
        ):
            raise _fail(
                "task_weights",
                weights,
                f"a list of {len(tasks)} finite non-negative numbers (one per task) with a "
                "positive finite sum",
            )
        weights = tuple(float(w) for w in weights)
    return tuple(tasks), weights


def _resolve_action_set(cfg: dict, tasks: tuple[str, ...]) -> str:
    defaults = {DEFAULT_ACTION_SET[task_info(t).game] for t in tasks}
    if "action_set" in cfg:
        if not isinstance(cfg["action_set"], str) or cfg["action_set"] not in ACTION_SETS:
            raise _fail("action_set", cfg["action_set"], ", ".join(ACTION_SETS))
        return cfg["action_set"]
    if len(defaults) > 1:
        raise EnvConfigError(
            f"env_config['tasks'] mixes games whose default action sets differ "
            f"({', '.join(sorted(defaults))}); set env_config['action_set'] to one of "
            f"{', '.join(ACTION_SETS)}"
        )
    return defaults.pop()


def _resolve_resize(cfg: dict) -> tuple[int, int] | None:
    value = cfg.get("resize", 84)
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else value
    if (
        not isinstance(pair, list | tuple)
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in pair)
        or not all(0 < v <= MAX_RESIZE for v in pair)
    ):
        raise _fail(
            "resize",
            value,
            f"an integer in [1, {MAX_RESIZE}], a [height, width] pair of them, or None",
        )
    return (pair[0], pair[1])


def _resolve_reward_weights(cfg: dict) -> dict[str, float]:
    weights = cfg.get("reward_weights", {})
    if not isinstance(weights, dict):
        raise _fail("reward_weights", weights, f"a dict over {', '.join(REWARD_COMPONENTS)}")
    for key, value in weights.items():
        if key not in REWARD_COMPONENTS:
            raise _fail(f"reward_weights.{key}", value, ", ".join(REWARD_COMPONENTS) + " as keys")
        if not _is_finite_number(value):
            raise _fail(f"reward_weights.{key}", value, "a finite number")
    return {k: float(v) for k, v in weights.items() if v != 1}


def validate_env_config(env_config: dict | None) -> MarioEnvConfig:
    """Check every key of a user's ``env_config`` and return the frozen config it means."""
    cfg = dict(env_config or {})
    unknown = sorted(set(cfg) - set(_KEYS))
    if unknown:
        raise EnvConfigError(
            f"env_config has unknown key {unknown[0]!r}; allowed: {', '.join(sorted(_KEYS))}"
        )
    tasks, weights = _resolve_tasks(cfg)
    grayscale = cfg.get("grayscale", True)
    if not isinstance(grayscale, bool):
        raise _fail("grayscale", grayscale, "True or False")
    return MarioEnvConfig(
        tasks=tasks,
        task_weights=weights,
        action_set=_resolve_action_set(cfg, tasks),
        frame_skip=_int(cfg, "frame_skip", 4, minimum=1, maximum=MAX_FRAME_SKIP),
        grayscale=grayscale,
        resize=_resolve_resize(cfg),
        frame_stack=_int(cfg, "frame_stack", 4, minimum=1, maximum=MAX_FRAME_STACK),
        max_episode_steps=_int(
            cfg, "max_episode_steps", 4500, minimum=1, maximum=MAX_EPISODE_STEPS, none_ok=True
        ),
        reward_weights=_resolve_reward_weights(cfg),
        idle_penalty=_float(cfg, "idle_penalty", 0.0, minimum=0.0),
        flag_bonus=_float(cfg, "flag_bonus", 0.0, minimum=0.0),
        reward_scale=_float(cfg, "reward_scale", 1.0, minimum=0.0),
        sticky_actions=_probability(cfg, "sticky_actions"),
        noop_max=_int(cfg, "noop_max", 0, minimum=0, maximum=MAX_NOOPS),
    )


# Mario rewards are per-frame progress (up to 15 per agent step after clipping); public Mario
# agents divide them by 10 so value targets stay near unit scale. Users override any key.
MARIO_ENV_DEFAULTS = {"reward_scale": 0.1}
# SMB1 trainers play the right-only actions (NOOP, right, right+A, right+B, right+A+B) unless
# told otherwise: with gamma 0.9 and 2048 x 8 PPO updates they took PPO past the pipes plateau on
# 1-1 (BENCHMARKS.md, "Learning"). Other games keep their own sets (SMB3 needs B for the P-meter).
SMB1_TRAINING_ACTION_SET = "right_only"


def training_env_config(env_config: dict | None) -> dict:
    """A user's ``env_config`` with the trainers' defaults (reward scale, SMB1's action set): what
    a trial plays, and what a demonstration for it must be recorded with."""
    env_config = {**MARIO_ENV_DEFAULTS, **(env_config or {})}
    tasks = validate_env_config(env_config).tasks
    if "action_set" not in env_config and all(task_info(t).game == "smb1" for t in tasks):
        env_config["action_set"] = SMB1_TRAINING_ACTION_SET
    return env_config
