"""Pure conversions from Tune results and episode records to the store's rows.

Nothing here touches the database. Every value that leaves this module is a plain JSON value
(NaN and infinities become None, numpy scalars become Python numbers, classes and callables become
their qualified names), so rows can go to PostgreSQL, to a JSONL spill file, or back again.

>>> json_safe({"lr": float("nan"), "env": dict, "sizes": (64, 64)})
{'lr': None, 'env': 'builtins.dict', 'sizes': [64, 64]}
>>> lookup({"mario": {"return_smoothed": 3.5}}, "mario/return_smoothed")
3.5
"""

import math
import os
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

__all__ = [
    "EPISODES_KEY",
    "episode_row",
    "iteration_row",
    "json_safe",
    "lookup",
    "normalize_episodes",
]

# The key under which EpisodeRecorder puts the iteration's finished episodes in the result.
EPISODES_KEY = "mario_episodes"

# Tune copies the whole trial config into every result; it is in trials.params already.
_RESULT_KEYS_NOT_STORED = frozenset({EPISODES_KEY, "config"})


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON values; anything JSON cannot hold becomes a readable string."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        # PostgreSQL text and jsonb cannot hold NUL characters.
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "domain_str") and hasattr(value, "get_sampler"):
        # A Tune search-space domain, e.g. tune.loguniform(1e-5, 1e-3).
        sampler = type(value.get_sampler()).__name__.lstrip("_")
        return f"{type(value).__name__}{value.domain_str} {sampler}"
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        if name:
            return f"{module}.{name}" if module else name
    return repr(value)


def lookup(nested: Mapping[str, Any], key: str) -> Any:
    """The value of a flattened Tune key (``"a/b/c"``) in a nested or already-flat dict."""
    if key in nested:
        return nested[key]
    value: Any = nested
    for part in key.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _text(value: Any) -> str | None:
    return None if value is None else json_safe(str(value))


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def normalize_episodes(value: Any) -> list[Mapping[str, Any]]:
    """The episode records in a result: a missing key or None is no episodes, and a lone record
    (metrics loggers unwrap one-item lists) is a list of one."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    return [record for record in value if isinstance(record, Mapping)]


def iteration_row(
    result: Mapping[str, Any],
    episodes: Sequence[Mapping[str, Any]] | None,
    *,
    metric: str,
) -> dict[str, Any]:
    """The ``iterations`` row for one training result.

    ``episodes`` are the records of the episodes that ended in this iteration (None when the
    result carried no episode list at all). The episode columns describe exactly those episodes;
    ``x_pos_mean``/``x_pos_max`` use each episode's furthest x (``x_pos_max``). Without an
    episode list they fall back to our smoothed ``mario`` metrics and RLlib's ``env_runners``
    figures. ``metric`` is the sweep's flattened metric key, stored as the ``metric`` column.
    """
    env_runners = result.get("env_runners") or {}
    mario = result.get("mario") or {}
    learner = (result.get("learners") or {}).get("default_policy") or {}

    returns = [r for r in (_number(e.get("return")) for e in episodes or ()) if r is not None]
    furthest = [x for x in (_number(e.get("x_pos_max")) for e in episodes or ()) if x is not None]
    flags = [bool(e.get("flag_get")) for e in episodes or ()]
    if episodes is None:
        return_mean = _number(env_runners.get("episode_return_mean"))
        return_max = _number(mario.get("return_max", env_runners.get("episode_return_max")))
        x_pos_max = _number(mario.get("x_pos_max"))
        flag_rate = _number(mario.get("flag_rate"))
        count = _integer(mario.get("episodes", env_runners.get("num_episodes")))
    else:
        return_mean, return_max = _mean(returns), max(returns, default=None)
        x_pos_max = max(furthest, default=None)
        flag_rate = _mean([float(flag) for flag in flags])
        count = len(episodes)

    stored = {k: v for k, v in result.items() if k not in _RESULT_KEYS_NOT_STORED}
    return {
        "training_iteration": int(result["training_iteration"]),
        "env_steps_lifetime": _integer(result.get("num_env_steps_sampled_lifetime")),
        "metric": _number(lookup(result, metric)),
        "return_smoothed": _number(mario.get("return_smoothed")),
        "x_pos_smoothed": _number(mario.get("x_pos_smoothed")),
        "episode_return_mean": return_mean,
        "episode_return_max": return_max,
        "x_pos_mean": _mean(furthest),
        "x_pos_max": x_pos_max,
        "flag_rate": flag_rate,
        "episodes": count,
        "loss": _number(learner.get("total_loss", learner.get("qf_loss"))),
        "entropy": _number(learner.get("entropy")),
        "kl": _number(learner.get("mean_kl_loss")),
        "time_total_s": _number(result.get("time_total_s")),
        "node_ip": _text(result.get("node_ip") or result.get("hostname")),
        "result": json_safe(stored),
    }


def episode_row(
    record: Mapping[str, Any], *, training_iteration: int | None, fallback_id: str
) -> dict[str, Any]:
    """The ``episodes`` row for one EpisodeRecorder record.

    ``fallback_id`` keys a record that lacks an ``episode_id``; derive it from the trial,
    iteration and position so that re-delivering the same result still maps to the same row.
    """
    return {
        "episode_id": _text(record.get("episode_id")) or fallback_id,
        "training_iteration": training_iteration,
        "env_runner": _integer(record.get("env_runner")),
        "env_index": _integer(record.get("env_index")),
        "episode_return": _number(record.get("return")),
        "length": _integer(record.get("length")),
        "x_pos": _integer(record.get("x_pos")),
        "x_pos_max": _integer(record.get("x_pos_max")),
        "flag_get": None if record.get("flag_get") is None else bool(record.get("flag_get")),
        "score": _integer(record.get("score")),
        "coins": _integer(record.get("coins")),
        "time_left": _integer(record.get("time_left")),
        "world": _integer(record.get("world")),
        "stage": _integer(record.get("stage")),
        "life": _integer(record.get("life")),
        "status": _text(record.get("status")),
        "game": _text(record.get("game")),
        "task_id": _text(record.get("task_id")),
    }
