"""Demonstrations on disk, in the format RLlib's offline data reads.

A demonstration directory holds one Parquet file per recorded episode, one row per agent step with
RLlib's default columns (``eps_id``, ``obs``, ``new_obs``, ``actions``, ``rewards``,
``terminateds``, ``truncateds``; ``ray.rllib.core.columns.Columns``), so
``config.offline_data(input_=[DIR], input_compress_columns=COMPRESSED_COLUMNS)`` trains on it as
it is. Observations are what the trainer sees (stacked uint8 frames), packed the way RLlib unpacks
them (``ray.rllib.utils.compression.pack``: pickled, LZ4, base64 — so, like a checkpoint, load
only demonstrations you made or trust). Nothing else is a column: RLlib turns extra columns into
model outputs.

Beside them, ``manifest.json`` says what the rows mean: the env options that shape an observation
and an action (action set, frame stack, resize, ...) and one entry per episode (source, task,
steps, return, furthest x_pos, flag). Ray Data reads only ``*.parquet`` here, so the manifest
never reaches a trainer; ``check_demonstrations`` compares it with a trainer's env before any
training starts. A directory is appended to only by recordings of the same observations and
actions; anything else is refused with one line before a file is written.
"""

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.rllib.core.columns import Columns
from ray.rllib.utils.compression import pack

from envs.config import MarioEnvConfig

__all__ = [
    "COMPRESSED_COLUMNS",
    "DemoError",
    "DemoEpisode",
    "DemoRecorder",
    "MANIFEST",
    "check_demonstrations",
]

MANIFEST = "manifest.json"
FORMAT = "mario-sweeps demonstrations 1"
COMPRESSED_COLUMNS = (Columns.OBS, Columns.NEXT_OBS)
"""Columns stored packed; give them to ``offline_data(input_compress_columns=...)``."""

# The env options that decide what an observation and an action index mean. Rewards, tasks and
# sticky actions may differ between a demonstration and the trainer; these may not.
_SHAPING_OPTIONS = ("action_set", "frame_skip", "grayscale", "resize", "frame_stack")


class DemoError(ValueError):
    """A demonstration directory that cannot be recorded to or trained on (one line)."""


@dataclass(frozen=True)
class DemoEpisode:
    """One recorded episode, as the manifest (and the ``demonstrations`` table) keeps it."""

    eps_id: str
    source: str
    """``checkpoint:PATH``, ``person:NAME`` or ``search:beamN`` (``envs.route_search``)."""
    task_id: str
    steps: int
    episode_return: float
    x_pos: int
    flag_get: bool
    file: str
    """The Parquet file, relative to the directory."""


def observation_format(config: MarioEnvConfig) -> dict[str, Any]:
    """What an observation and an action index mean under ``config`` (JSON-safe)."""
    values = {name: getattr(config, name) for name in _SHAPING_OPTIONS}
    values["resize"] = None if config.resize is None else list(config.resize)
    values["observation_shape"] = list(config.observation_shape)
    return values


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    """The directory's manifest; None for a new or empty directory; DemoError for a foreign one."""
    if not directory.exists():
        return None
    if not directory.is_dir():
        raise DemoError(f"{os.fspath(directory)!r} is not a directory")
    path = directory / MANIFEST
    if not path.is_file():
        if any(directory.iterdir()):
            raise DemoError(
                f"{os.fspath(directory)!r} holds files but no {MANIFEST}; allowed: an empty or "
                "new directory, or one this recorder wrote"
            )
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DemoError(f"{os.fspath(path)!r} cannot be read as JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DemoError(f"{os.fspath(path)!r} is not a demonstrations manifest ({FORMAT!r})")
    return manifest


def _mismatch(recorded: dict[str, Any], wanted: dict[str, Any], whose: str) -> str | None:
    for name in (*_SHAPING_OPTIONS, "observation_shape"):
        if recorded.get(name) != wanted[name]:
            return f"{name} {recorded.get(name)!r}; {whose} is {wanted[name]!r}"
    return None


def check_demonstrations(directory: str | os.PathLike, config: MarioEnvConfig) -> list[DemoEpisode]:
    """The episodes in ``directory``, if a trainer on ``config`` can learn from them.

    Raises ``DemoError`` for a missing, empty or foreign directory, or demonstrations recorded
    with another action set, frame stack or observation size than the trainer's."""
    path = Path(directory)
    if not path.is_dir():
        raise DemoError(f"demonstrations {os.fspath(path)!r} is not a directory")
    manifest = _read_manifest(path)
    if manifest is None or not manifest.get("episodes"):
        raise DemoError(f"demonstrations {os.fspath(path)!r} holds no recorded episode")
    problem = _mismatch(manifest["observations"], observation_format(config), "the trainer's")
    if problem:
        raise DemoError(f"demonstrations {os.fspath(path)!r} were recorded with {problem}")
    return [DemoEpisode(**episode) for episode in manifest["episodes"]]


class DemoRecorder:
    """Records agent steps into a demonstration directory, an episode per Parquet file.

    ``begin(obs)``, then ``step(...)`` per agent step, then ``end(info)``: a kept episode is
    written and added to the manifest at once, so an interrupted recording keeps every episode it
    finished. ``only_flags`` keeps only episodes that reached the flag."""

    def __init__(
        self,
        directory: str | os.PathLike,
        config: MarioEnvConfig,
        *,
        source: str,
        only_flags: bool = False,
    ):
        self.directory = Path(directory)
        self.source = source
        self.only_flags = only_flags
        self._format = observation_format(config)
        manifest = _read_manifest(self.directory)
        if manifest is not None:
            problem = _mismatch(manifest["observations"], self._format, "this recording's")
            if problem:
                raise DemoError(
                    f"{os.fspath(self.directory)!r} holds demonstrations recorded with {problem}"
                )
        self._episodes = [] if manifest is None else list(manifest["episodes"])
        """The directory's episodes as manifest entries, earlier recordings' first."""
        self._rows: list[dict[str, Any]] = []
        self._obs: str | None = None
        """The packed observation the next step starts from."""
        self._return = 0.0

    @property
    def episodes(self) -> list[DemoEpisode]:
        return [DemoEpisode(**episode) for episode in self._episodes]

    def begin(self, obs: np.ndarray) -> None:
        self._rows, self._obs, self._return = [], pack(obs), 0.0
        self._eps_id = uuid.uuid4().hex

    def step(self, action: int, reward: float, new_obs: np.ndarray, terminated, truncated) -> None:
        """One agent step; each observation is packed once (a step's ``new_obs`` is the next
        step's ``obs``), the recorder's main cost at 15 agent steps/s of a person's play."""
        packed = pack(new_obs)
        self._rows.append(
            {
                Columns.EPS_ID: self._eps_id,
                Columns.OBS: self._obs,
                Columns.NEXT_OBS: packed,
                Columns.ACTIONS: int(action),
                Columns.REWARDS: float(reward),
                Columns.TERMINATEDS: bool(terminated),
                Columns.TRUNCATEDS: bool(truncated),
            }
        )
        self._obs, self._return = packed, self._return + float(reward)

    def end(self, info: dict[str, Any], *, cut: bool = False) -> DemoEpisode | None:
        """Write the episode (if it has a step and is kept) and return its manifest entry.
        ``cut``: the episode was stopped before the env ended it; its last step is truncated."""
        rows, self._rows = self._rows, []
        if not rows or (self.only_flags and not info["flag_get"]):
            return None
        if cut:
            rows[-1][Columns.TRUNCATEDS] = True
        episode = DemoEpisode(
            eps_id=self._eps_id,
            source=self.source,
            task_id=info["task_id"],
            steps=len(rows),
            episode_return=self._return,
            x_pos=int(info["x_pos_max"]),
            flag_get=bool(info["flag_get"]),
            file=f"episode-{self._eps_id}.parquet",
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), self.directory / episode.file)
        self._episodes.append(asdict(episode))
        self._write_manifest()
        return episode

    def _write_manifest(self) -> None:
        manifest = {"format": FORMAT, "observations": self._format, "episodes": self._episodes}
        tmp = self.directory / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(self.directory / MANIFEST)
