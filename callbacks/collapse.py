"""Stopping trials: the per-trial env-step budget and collapse detection, with the reason why.

ASHA compares trials at rungs; it never notices a trial that was good at 800k steps and then fell
apart. ``CollapseDetector`` watches one trial's smoothed metric: once it has risen to a peak, a
value more than ``drop_fraction`` below that peak for ``window`` consecutive reports is a collapse.
``SweepStopper`` applies the budget and the detector to every trial and writes why it stopped one
into the result that ended it (``result[STOP_REASON_KEY]``). That key is the one source of a stop
reason: :func:`stop_reason` reads it for the store and the searcher, and a trial that ended without
it was stopped by the scheduler.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.tune.stopper import Stopper

from callbacks.records import COLLAPSE_PEAK_KEY, ENV_STEPS_KEY, STOP_REASON_KEY, lookup

__all__ = ["Collapse", "CollapseDetector", "SweepStopper", "stop_reason"]


@dataclass(frozen=True)
class Collapse:
    """The collapse rule: the metric stays ``drop_fraction`` below its own peak for ``window``
    consecutive iterations, after ``grace_env_steps``.

    The defaults were chosen by ``benchmarks/collapse_detection.py`` on real 500k-step curves,
    watching ``mario/x_pos_last100`` (the sweeps' metric): no false positive in 10 healthy
    watches (the deepest healthy drop held 4 iterations was 21 %, far from 40 %), and all 16
    spliced collapses caught within 16.5k env steps (median 11.9k). The old rule (an EMA of
    x_pos, 40 % for 8 iterations) had healthy curves 37 % below their lucky peak for 8
    iterations: 3 points from a false stop. DQN sweeps wait longer (``sweeps.spec.DQN_COLLAPSE``:
    while epsilon anneals, a DQN's x_pos is not yet its own)."""

    drop_fraction: float = 0.4
    window: int = 4
    grace_env_steps: int = 100_000
    """No collapse verdict before this many env steps (early values are noise)."""
    min_peak: float | None = None
    """Ignore peaks not better than this (at or below it in max mode, at or above in min mode):
    a trial that never learned cannot collapse. None: every peak counts."""

    def __post_init__(self):
        if not 0 < self.drop_fraction < 1:
            raise ValueError(
                f"collapse drop_fraction={self.drop_fraction!r} is invalid; allowed: 0 < x < 1"
            )
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"collapse window={self.window!r} is invalid; allowed: >= 1")
        if self.grace_env_steps < 0:
            raise ValueError(
                f"collapse grace_env_steps={self.grace_env_steps!r} is invalid; allowed: >= 0"
            )


@dataclass
class CollapseDetector:
    """Peak-drop detector for one metric series (feed values, get the verdict)."""

    rule: Collapse = field(default_factory=Collapse)
    mode: str = "max"
    peak: float | None = None
    below: int = 0

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"collapse mode={self.mode!r} is invalid; allowed: max, min")

    def update(self, value: float) -> bool:
        """Add one report; True once the series has collapsed."""
        score = value if self.mode == "max" else -value
        if self.peak is None or score > self.peak:
            self.peak, self.below = score, 0
            return False
        if self.rule.min_peak is not None:
            floor = self.rule.min_peak if self.mode == "max" else -self.rule.min_peak
            if self.peak <= floor:
                return False
        threshold = self.peak - self.rule.drop_fraction * abs(self.peak)
        self.below = self.below + 1 if score < threshold else 0
        return self.below >= self.rule.window


@dataclass
class SweepStopper(Stopper):
    """Stops a trial at its env-step budget ("completed") or on collapse ("collapse").

    With ``stop_on_collapse=False`` (PBT: a collapsing member is the scheduler's to replace) a
    collapse is recorded instead: the result gets the peak it fell from under
    ``COLLAPSE_PEAK_KEY`` (stored as a lineage event) and the detector starts afresh.
    """

    metric: str
    max_env_steps: int
    mode: str = "max"
    collapse: Collapse = field(default_factory=Collapse)
    detectors: dict = field(default_factory=dict)
    stop_on_collapse: bool = True

    def __post_init__(self):
        CollapseDetector(self.collapse, self.mode)  # validates the mode

    def __call__(self, trial_id: str, result: dict) -> bool:
        steps = result.get(ENV_STEPS_KEY) or 0
        reason = "completed" if steps >= self.max_env_steps else None
        value = lookup(result, self.metric)
        if value is not None:
            detector = self.detectors.setdefault(
                trial_id, CollapseDetector(self.collapse, self.mode)
            )
            collapsed = detector.update(float(value))
            if collapsed and steps >= self.collapse.grace_env_steps and reason is None:
                if self.stop_on_collapse:
                    reason = "collapse"
                else:
                    peak = detector.peak if self.mode == "max" else -detector.peak
                    result[COLLAPSE_PEAK_KEY] = peak
                    del self.detectors[trial_id]
        if reason is None:
            return False
        result[STOP_REASON_KEY] = reason
        return True

    def stop_all(self) -> bool:
        return False

    def get_state(self) -> dict:
        """Each trial's peak and count of reports below it (``callbacks.decisions`` saves it)."""
        return {trial: [d.peak, d.below] for trial, d in self.detectors.items()}

    def set_state(self, state: dict) -> None:
        self.detectors = {
            trial: CollapseDetector(self.collapse, self.mode, peak=peak, below=below)
            for trial, (peak, below) in state.items()
        }


def stop_reason(result: Mapping[str, Any] | None, *, scheduler: str = "asha") -> str:
    """Why a trial that ended without error ended: the stopper's reason in its last result, else
    the scheduler stopped it."""
    return (result or {}).get(STOP_REASON_KEY) or scheduler
