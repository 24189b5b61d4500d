"""``EpisodeRecorder``: every finished training episode of every env runner and sub-env, recorded.

The seed project read ``dones[0]`` and silently dropped 7 of 8 environments' episodes. Here
``on_episode_end`` fires once per finished episode, whichever env runner and vectorised sub-env
played it; each record goes into the runner's metrics under ``EPISODES_KEY`` with the
``item_series`` reduction (no window: a window would silently truncate), which concatenates the
records of all runners into the iteration's result. ``on_train_result`` (on the trial actor) then
moves the list to ``result[EPISODES_KEY]`` — where the driver-side ``PostgresCallback`` pops it,
keeping it out of Tune's loggers — and adds ``result["mario"]``: our scheduler metrics, defined in
every iteration (RLlib's episode means are NaN or absent in iterations where no episode ended).
"""

import math

from ray.rllib.callbacks.callbacks import RLlibCallback

from callbacks.store.rows import EPISODES_KEY

__all__ = ["EPISODES_KEY", "METRICS_KEY", "EpisodeRecorder", "episode_record"]

METRICS_KEY = "mario"


def _plain(value):
    """numpy scalars -> Python scalars, so records pickle small and go into JSON/psycopg as is."""
    return value.item() if hasattr(value, "item") else value


def episode_record(
    *, episode_id: str, env_runner: int, env_index: int, ret: float, length: int, info: dict
) -> dict:
    """One episode's row: the facts ``MarioEnv`` puts in every info, plus who played it."""
    return {
        "episode_id": episode_id,
        "env_runner": int(env_runner),
        "env_index": int(env_index),
        "return": float(ret),
        "length": int(length),
        "x_pos": _plain(info.get("x_pos")),
        "x_pos_max": _plain(info.get("x_pos_max")),
        "flag_get": bool(info.get("flag_get", False)),
        "score": _plain(info.get("score")),
        "coins": _plain(info.get("coins")),
        "time_left": _plain(info.get("time")),
        "world": _plain(info.get("world")),
        "stage": _plain(info.get("stage")),
        "life": _plain(info.get("life")),
        "status": info.get("status"),
        "game": info.get("game"),
        "task_id": info.get("task_id"),
    }


def _as_list(value) -> list[dict]:
    """RLlib unwraps a one-item series to the bare item and reports none as [] or nothing."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return list(value)


class EpisodeRecorder(RLlibCallback):
    """Records training episodes and reports smoothed return / x_pos every iteration.

    Smoothing is an exponential moving average over episodes (``EMA_ALPHA`` per episode, about a
    20-episode memory), carried forward through iterations in which no episode ended, and 0.0
    before the first episode. Its state lives in this callback on the trial actor; a trial
    restored from a checkpoint restarts it from its first episodes.
    """

    EMA_ALPHA = 0.1

    def __init__(self):
        super().__init__()
        self._ema: dict[str, float | None] = {"return": None, "x_pos": None}

    def on_episode_end(
        self,
        *,
        episode,
        prev_episode_chunks=None,
        env_runner=None,
        metrics_logger=None,
        env_index=0,
        **kwargs,
    ) -> None:
        if env_runner is not None and env_runner.config.in_evaluation:
            return  # evaluation episodes are not training data
        chunks = prev_episode_chunks or []
        record = episode_record(
            episode_id=str(episode.id_),
            env_runner=getattr(env_runner, "worker_index", 0),
            env_index=env_index,
            # get_return()/len() cover the current chunk only; earlier chunks were already sent.
            ret=episode.get_return() + sum(c.get_return() for c in chunks),
            length=len(episode) + sum(len(c) for c in chunks),
            info=episode.get_infos(-1),
        )
        metrics_logger.log_value(EPISODES_KEY, record, reduce="item_series")

    def _smooth(self, key: str, values: list[float]) -> float:
        ema = self._ema[key]
        for v in values:
            ema = v if ema is None else ema + self.EMA_ALPHA * (v - ema)
        self._ema[key] = ema
        return 0.0 if ema is None else ema

    def on_train_result(self, *, algorithm=None, metrics_logger=None, result: dict, **kwargs):
        runners = result.get("env_runners", {})
        episodes = _as_list(runners.pop(EPISODES_KEY, None))
        for record in episodes:
            record["training_iteration"] = result.get("training_iteration")
        returns = [e["return"] for e in episodes]
        x_pos = [e["x_pos_max"] for e in episodes if e["x_pos_max"] is not None]
        flags = [e["flag_get"] for e in episodes]
        result[EPISODES_KEY] = episodes
        result[METRICS_KEY] = {
            "return_smoothed": self._smooth("return", returns),
            "x_pos_smoothed": self._smooth("x_pos", x_pos),
            "episodes": len(episodes),
            "return_mean": sum(returns) / len(returns) if returns else math.nan,
            "return_max": max(returns) if returns else math.nan,
            "x_pos_mean": sum(x_pos) / len(x_pos) if x_pos else math.nan,
            "x_pos_max": max(x_pos) if x_pos else math.nan,
            "flag_rate": sum(flags) / len(flags) if flags else math.nan,
            "flags": sum(flags),
        }
