"""DQN on SMB1 World 1-1: learning rate x target-network update period x n-step returns.

Double Q, dueling heads and prioritized replay stay on (algos' defaults). ASHA's first rung sits
at 100k env steps because DQN learns nothing before its replay buffer warms up (5k steps) and its
epsilon has decayed (100k steps); reduction factor 3 as for PPO.
"""

import sys

from ray import tune

from sweeps.runner import main
from sweeps.spec import DQN_COLLAPSE, DQN_SMOKE, Asha, Sweep

SWEEP = Sweep(
    name="dqn_lr_target",
    algo="DQN",
    search_space={
        "lr": tune.loguniform(1e-5, 1e-3),
        "target_network_update_freq": tune.choice([500, 1_000, 2_000, 4_000, 8_000]),
        "n_step": tune.choice([1, 3, 5]),
    },
    points_to_evaluate=[{"lr": 1e-4, "target_network_update_freq": 2_000, "n_step": 3}],
    max_env_steps=1_000_000,
    num_samples=12,
    asha=Asha(grace_period=100_000, reduction_factor=3),
    collapse=DQN_COLLAPSE,
    smoke=DQN_SMOKE,
)

if __name__ == "__main__":
    sys.exit(main(SWEEP))
