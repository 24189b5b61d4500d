"""DQN vs PPO on the same task, budget and metric: each with its defaults, over several seeds.

The seed project's Phase 4 comparison, done by hand, becomes two sweeps (``<name>-ppo`` and
``<name>-dqn``) whose only searched value is the seed; it ends with ``python -m sweeps.compare``'s
verdict over the two sets of seeds (IQM of the final metric, 95 % intervals, P(PPO > DQN)). Each
sweep's trials already are seeds of one config, so there is no confirm stage.
"""

import sys
from dataclasses import replace
from typing import Any

from ray import tune

from sweeps.compare import run_and_compare
from sweeps.spec import DQN_COLLAPSE, DQN_SMOKE, PPO_SMOKE, Asha, Sweep

SEEDS = [0, 1, 2, 3]
# Same budget for both, and ASHA's first rung at the budget: nothing is stopped early.
COMMON: dict[str, Any] = {
    "search_space": {"seed": tune.choice(SEEDS)},
    "points_to_evaluate": [{"seed": s} for s in SEEDS],
    "max_env_steps": 500_000,
    "num_samples": len(SEEDS),
    "asha": Asha(grace_period=500_000),
    "confirm_top": 0,
}
SWEEPS = [
    Sweep(name="dqn_vs_ppo", algo="PPO", smoke=replace(PPO_SMOKE, confirm_top=0), **COMMON),
    Sweep(
        name="dqn_vs_ppo",
        algo="DQN",
        collapse=DQN_COLLAPSE,
        smoke=replace(DQN_SMOKE, confirm_top=0),
        **COMMON,
    ),
]

if __name__ == "__main__":
    sys.exit(run_and_compare(SWEEPS))
