"""``Schedule``: how a stage's trials are scheduled, decided once.

``sweeps.options`` makes it from the command line (ASHA with Optuna, or a PBT/PB2 population);
the confirm stage's is :meth:`Schedule.confirm` (FIFO over fixed configs and seeds). The Tuner
builder, the callbacks, the console header, the stored sweep row (:meth:`Schedule.record`) and the
report (:meth:`Schedule.from_record`) all read this one value instead of comparing names.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from callbacks.records import CONFIRM_STAGE, SEARCH_STAGE, STAGES
from sweeps.spec import Asha, Pbt

__all__ = ["KINDS", "TIME_ATTR", "Schedule"]

KINDS = ("asha", "pbt", "pb2", "fifo")
TIME_ATTR = "num_env_steps_sampled_lifetime"
"""Every scheduler's clock: env steps, so budgets, rungs and perturbations mean the same for PPO
and DQN."""


@dataclass(frozen=True)
class Schedule:
    """The scheduler of one stage: its kind, budget and settings (``asha`` or ``pbt``)."""

    kind: str
    max_env_steps: int
    asha: Asha | None = None
    pbt: Pbt | None = None
    stage: str = SEARCH_STAGE

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.stage not in STAGES:
            raise ValueError(f"no schedule {self.kind!r} for stage {self.stage!r}")
        if (self.kind == "asha") != (self.asha is not None):
            raise ValueError("an ASHA schedule, and only it, has ASHA settings")
        if self.population != (self.pbt is not None):
            raise ValueError("a PBT/PB2 schedule, and only it, has a population")

    @property
    def population(self) -> bool:
        """PBT or PB2: members are perturbed, not stopped; a collapse is recorded, not stopped."""
        return self.kind in ("pbt", "pb2")

    @property
    def uses_optuna(self) -> bool:
        return self.kind == "asha"

    @property
    def stop_reason(self) -> str:
        """What ``trials.stop_reason`` says for a trial this scheduler stopped."""
        return "pbt" if self.population else "asha"

    def confirm(self) -> "Schedule":
        """The confirm stage after this search: every (config, seed) runs its whole budget."""
        return Schedule("fifo", self.max_env_steps, stage=CONFIRM_STAGE)

    def record(self) -> dict[str, Any]:
        """The ``sweeps.scheduler`` JSON stored on the sweep row (what the report reads back)."""
        chosen = self.asha or self.pbt
        settings = asdict(chosen) if chosen is not None else {}
        return {
            "type": self.kind.upper(),
            "stage": self.stage,
            "time_attr": TIME_ATTR,
            "max_t": self.max_env_steps,
            **settings,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "Schedule | None":
        """The schedule a stored sweep row ran under; None for a row without a readable one."""
        record = record or {}
        kind = str(record.get("type", "")).lower()
        try:
            max_t = int(record.get("max_t") or 0)
            if kind == "asha":
                asha = Asha(int(record["grace_period"]), int(record["reduction_factor"]))
                return cls(kind, max_t, asha=asha)
            if kind in ("pbt", "pb2"):
                fields = Pbt.__dataclass_fields__
                return cls(kind, max_t, pbt=Pbt(**{k: v for k, v in record.items() if k in fields}))
            return cls(kind, max_t, stage=record.get("stage", SEARCH_STAGE))
        except (KeyError, TypeError, ValueError):
            return None

    def asha_rungs(self) -> list[int]:
        """ASHA's env-step milestones (one bracket): ``grace * rf**k`` for
        ``k < int(log(max_t / grace) / log(rf) + 1)``, the formula of Tune's ``_Bracket``
        (guarded by ``tests/test_report.py``'s rung test against a real ASHA run); [] otherwise.

        >>> Schedule("asha", 1_000, asha=Asha(250, 2)).asha_rungs()
        [250, 500, 1000]
        """
        if self.asha is None or self.asha.grace_period <= 0 or self.asha.reduction_factor <= 1:
            return []
        grace, rf = self.asha.grace_period, self.asha.reduction_factor
        count = int(math.log(self.max_env_steps / grace) / math.log(rf) + 1)
        return [int(grace * rf**k) for k in range(max(count, 0))]

    def describe(self, *, max_concurrent: int) -> str:
        """The console header's line: what schedules the trials, and what does not apply."""
        if self.pbt is None:
            return "Optuna TPE (study in the results database) + ASHA on env steps + collapse stops"
        pbt = self.pbt
        return (
            f"{self.kind.upper()}: population {pbt.population}, exploit/explore every "
            f"{pbt.perturbation_interval:,} env steps, bottom {pbt.quantile_fraction:.0%} copies "
            f"the top {pbt.quantile_fraction:.0%}; {max_concurrent} members train at once (Tune "
            "pauses the rest). No Optuna study (the population starts from the search space), no "
            "ASHA rungs; collapses are recorded, not stopped"
        )

    def within_budget(self) -> "Schedule":
        """ASHA's first rung moved to the budget when the budget is below it (``Asha.within``)."""
        if self.asha is None:
            return self
        return replace(self, asha=self.asha.within(self.max_env_steps))
