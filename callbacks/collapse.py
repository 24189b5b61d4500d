"""Stopping trials: the per-trial env-step budget and collapse detection, with the reason why.

ASHA compares trials at rungs; it never notices a trial that was good at 800k steps and then fell
apart. ``CollapseDetector`` watches one trial's smoothed metric: once it has risen to a peak, a
value more than ``drop_fraction`` below that peak for ``window`` consecutive reports is a collapse.
``SweepStopper`` applies the budget and the detector to every trial, remembers why it stopped each
one, and writes that reason into the result it stopped (``result["stop_reason"]``) so the searcher
and the store can tell a collapse or a finished budget from an ASHA stop.
"""

from dataclasses import dataclass, field

from ray.tune.stopper import Stopper

__all__ = ["CollapseDetector", "SweepStopper"]


def _lookup(result: dict, key: str):
    """A flattened Tune key (``"mario/x_pos_smoothed"``) looked up in a nested result."""
    value = result
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass
class CollapseDetector:
    """Peak-drop detector for one metric series (pure: feed values, ask ``collapsed``)."""

    drop_fraction: float = 0.5
    window: int = 3
    min_peak: float | None = None
    """Ignore peaks not better than this (at or below it in max mode, at or above in min mode):
    a trial that never learned cannot collapse. None: every peak counts."""
    mode: str = "max"
    peak: float | None = None
    below: int = 0

    def __post_init__(self):
        if not 0 < self.drop_fraction < 1:
            raise ValueError(
                f"collapse drop_fraction={self.drop_fraction!r} is invalid; allowed: 0 < x < 1"
            )
        if self.window < 1:
            raise ValueError(f"collapse window={self.window!r} is invalid; allowed: >= 1")
        if self.mode not in ("max", "min"):
            raise ValueError(f"collapse mode={self.mode!r} is invalid; allowed: max, min")

    def update(self, value: float) -> bool:
        """Add one report; True once the series has collapsed."""
        score = value if self.mode == "max" else -value
        if self.peak is None or score > self.peak:
            self.peak, self.below = score, 0
            return False
        if self.min_peak is not None:
            floor = self.min_peak if self.mode == "max" else -self.min_peak
            if self.peak <= floor:
                return False
        threshold = self.peak - self.drop_fraction * abs(self.peak)
        self.below = self.below + 1 if score < threshold else 0
        return self.below >= self.window


@dataclass
class SweepStopper(Stopper):
    """Stops a trial at its env-step budget ("completed") or on collapse ("collapse")."""

    metric: str
    max_env_steps: int
    mode: str = "max"
    drop_fraction: float = 0.5
    window: int = 3
    min_peak: float | None = None
    grace_env_steps: int = 0
    """No collapse verdict before this many env steps (early returns are noise)."""
    time_attr: str = "num_env_steps_sampled_lifetime"
    detectors: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)

    def __post_init__(self):
        CollapseDetector(self.drop_fraction, self.window, self.min_peak, self.mode)  # validates

    def __call__(self, trial_id: str, result: dict) -> bool:
        steps = result.get(self.time_attr) or 0
        reason = None
        if steps >= self.max_env_steps:
            reason = "completed"
        value = _lookup(result, self.metric)
        if value is not None:
            detector = self.detectors.setdefault(
                trial_id,
                CollapseDetector(self.drop_fraction, self.window, self.min_peak, self.mode),
            )
            if detector.update(float(value)) and steps >= self.grace_env_steps and reason is None:
                reason = "collapse"
        if reason is None:
            return False
        self.reasons[trial_id] = reason
        result["stop_reason"] = reason
        return True

    def stop_reason(self, trial_id: str) -> str | None:
        return self.reasons.get(trial_id)

    def stop_all(self) -> bool:
        return False
