"""``EpisodeRecorder``: every finished training episode of every env runner and sub-env, recorded.

The seed project read ``dones[0]`` and silently dropped 7 of 8 environments' episodes. Here
``on_episode_end`` fires once per finished episode, whichever env runner and vectorised sub-env
played it; each record goes into the runner's metrics under ``EPISODES_KEY`` with the
``item_series`` reduction (no window: a window would silently truncate), which concatenates the
records of all runners into the iteration's result. ``on_train_result`` (on the trial actor) then
moves the list to ``result[EPISODES_KEY]`` — where the driver-side ``PostgresCallback`` pops it,
keeping it out of Tune's loggers — and adds the ``mario/...`` keys: our scheduler metrics, defined
in every iteration (RLlib's episode means are NaN or absent in iterations where no episode ended).
The record's shape is :class:`callbacks.records.EpisodeRecord`; env runners import nothing else of
ours (no database driver on a worker node).
"""

import math
from collections import deque

from ray.rllib.callbacks.callbacks import RLlibCallback

from callbacks.records import EPISODES_KEY, episode_record, metric_key

__all__ = ["EpisodeRecorder"]


def _as_list(value) -> list[dict]:
    """RLlib unwraps a one-item series to the bare item and reports none as [] or nothing."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return list(value)


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else math.nan


class EpisodeRecorder(RLlibCallback):
    """Records training episodes and reports our per-iteration metrics (``mario/...``).

    ``mario/return_smoothed`` and ``mario/x_pos_smoothed`` are exponential moving averages over
    episodes (``EMA_ALPHA`` per episode, about a 20-episode memory), carried forward through
    iterations in which no episode ended, and 0.0 before the first episode;
    ``mario/x_pos_last100`` is the mean x_pos of the last 100 episodes (fewer at the start). Their
    state lives in this callback on the trial actor and travels in the trial's checkpoints
    (:meth:`get_state`, saved by ``algos.algorithms``), so a restored trial reports what it would
    have reported uninterrupted, and a PBT member that continues from a donor's checkpoint
    continues the donor's windows with the donor's weights: its metric describes the policy it
    now trains. The other ``mario/`` keys describe exactly this iteration's episodes (NaN when
    none ended) and are the store's iteration aggregates: nothing recomputes them.
    """

    EMA_ALPHA = 0.1
    RECENT_EPISODES = (100,)
    """``mario/x_pos_last<n>``: the mean x_pos of the last n episodes, a metric whose noise is
    known (episode sd / sqrt(n)) and whose best value is not a lucky streak of a few episodes
    (``benchmarks/collapse_detection.py`` measured why; BENCHMARKS.md)."""

    def __init__(self, recent_episodes: tuple[int, ...] | None = None):
        super().__init__()
        self._ema: dict[str, float | None] = {"return": None, "x_pos": None}
        sizes = self.RECENT_EPISODES if recent_episodes is None else recent_episodes
        self._recent: dict[int, deque[float]] = {n: deque(maxlen=n) for n in sizes}

    def get_state(self) -> dict:
        """The windows behind the smoothed metrics, as plain values (checkpointed)."""
        return {
            "ema": dict(self._ema),
            "recent": {n: list(recent) for n, recent in self._recent.items()},
        }

    def set_state(self, state: dict) -> None:
        self._ema = dict(state["ema"])
        for n, values in state["recent"].items():
            if n in self._recent:
                self._recent[n].clear()
                self._recent[n].extend(values)

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
        returns = [e["episode_return"] for e in episodes]
        x_pos = [e["x_pos_max"] for e in episodes if e["x_pos_max"] is not None]
        flags = [e["flag_get"] for e in episodes]
        result[EPISODES_KEY] = episodes
        for n, recent in self._recent.items():
            recent.extend(x_pos)
            result[metric_key(f"x_pos_last{n}")] = _mean(list(recent)) if recent else 0.0
        result.update(
            {
                metric_key("return_smoothed"): self._smooth("return", returns),
                metric_key("x_pos_smoothed"): self._smooth("x_pos", x_pos),
                metric_key("episodes"): len(episodes),
                metric_key("return_mean"): _mean(returns),
                metric_key("return_max"): max(returns) if returns else math.nan,
                metric_key("x_pos_mean"): _mean(x_pos),
                metric_key("x_pos_max"): max(x_pos) if x_pos else math.nan,
                metric_key("flag_rate"): _mean(flags),
                metric_key("flags"): sum(flags),
            }
        )
