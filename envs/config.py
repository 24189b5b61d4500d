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
progress. With every weight 1 and no idle penalty the reward is exactly the env's own.
"""

from dataclasses import dataclass, field, fields
from typing import Any

from envs.actions import ACTION_SETS, DEFAULT_ACTION_SET
from envs.tasks import GAMES, TaskError, resolve_task, task_info

__all__ = ["EnvConfigError", "MarioEnvConfig", "REWARD_COMPONENTS", "validate_env_config"]

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
    reward_scale: float = 1.0
    """Applied last, after weights and idle penalty (PPO likes returns near unit scale)."""

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        height, width = self.resize or (240, 256)
        return (height, width, self.frame_stack * (1 if self.grayscale else 3))


_KEYS = ("task", "game", "world", "stage") + tuple(f.name for f in fields(MarioEnvConfig))


def _fail(key: str, value: Any, allowed: str) -> EnvConfigError:
    return EnvConfigError(f"env_config[{key!r}]={value!r} is invalid; allowed: {allowed}")


def _int(cfg: dict, key: str, default: int | None, *, minimum: int, none_ok: bool = False):
    value = cfg.get(key, default)
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(key, value, f"an integer >= {minimum}" + (" or None" if none_ok else ""))
    return value


def _float(cfg: dict, key: str, default: float, *, minimum: float | None = None) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, value, "a number")
    if minimum is not None and value < minimum:
        raise _fail(key, value, f"a number >= {minimum}")
    return float(value)


def _resolve_tasks(cfg: dict) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    game = cfg.get("game", "smb1")
    if game not in GAMES:
        raise _fail("game", game, ", ".join(GAMES))
    chosen = [k for k in ("task", "tasks") if k in cfg]
    if len(chosen) > 1 or (chosen and ("world" in cfg or "stage" in cfg)):
        raise EnvConfigError(
            f"env_config sets {sorted(set(chosen) | ({'world', 'stage'} & set(cfg)))}; "
            "allowed: exactly one of 'task', 'tasks', or 'world'+'stage'"
        )
    try:
        if "task" in cfg:
            if not isinstance(cfg["task"], str):
                raise _fail("task", cfg["task"], "a registered task id string")
            return (task_info(cfg["task"]).task_id,), None
        if "tasks" not in cfg:
            return (
                resolve_task(game=game, world=cfg.get("world", 1), stage=cfg.get("stage", 1)),
            ), None
        entries = cfg["tasks"]
        if not isinstance(entries, list | tuple) or not entries:
            raise _fail("tasks", entries, "a non-empty list of task ids or [world, stage] pairs")
        tasks = []
        for entry in entries:
            if isinstance(entry, str):
                tasks.append(task_info(entry).task_id)
            elif isinstance(entry, list | tuple) and len(entry) == 2:
                tasks.append(resolve_task(game=game, world=entry[0], stage=entry[1]))
            else:
                raise _fail("tasks", entry, "a task id string or a [world, stage] pair")
    except TaskError as err:
        raise EnvConfigError(f"env_config: {err}") from None
    weights = cfg.get("task_weights")
    if weights is not None:
        if (
            not isinstance(weights, list | tuple)
            or len(weights) != len(tasks)
            or any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise _fail(
                "task_weights",
                weights,
                f"a list of {len(tasks)} non-negative numbers (one per task) with a positive sum",
            )
        weights = tuple(float(w) for w in weights)
    return tuple(tasks), weights


def _resolve_action_set(cfg: dict, tasks: tuple[str, ...]) -> str:
    defaults = {DEFAULT_ACTION_SET[task_info(t).game] for t in tasks}
    if "action_set" in cfg:
        if cfg["action_set"] not in ACTION_SETS:
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
        or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in pair)
    ):
        raise _fail("resize", value, "a positive integer, a [height, width] pair of them, or None")
    return (pair[0], pair[1])


def _resolve_reward_weights(cfg: dict) -> dict[str, float]:
    weights = cfg.get("reward_weights", {})
    if not isinstance(weights, dict):
        raise _fail("reward_weights", weights, f"a dict over {', '.join(REWARD_COMPONENTS)}")
    for key, value in weights.items():
        if key not in REWARD_COMPONENTS:
            raise _fail(f"reward_weights.{key}", value, ", ".join(REWARD_COMPONENTS) + " as keys")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(f"reward_weights.{key}", value, "a number")
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
        frame_skip=_int(cfg, "frame_skip", 4, minimum=1),
        grayscale=grayscale,
        resize=_resolve_resize(cfg),
        frame_stack=_int(cfg, "frame_stack", 4, minimum=1),
        max_episode_steps=_int(cfg, "max_episode_steps", 4500, minimum=1, none_ok=True),
        reward_weights=_resolve_reward_weights(cfg),
        idle_penalty=_float(cfg, "idle_penalty", 0.0, minimum=0.0),
        reward_scale=_float(cfg, "reward_scale", 1.0, minimum=0.0),
    )
