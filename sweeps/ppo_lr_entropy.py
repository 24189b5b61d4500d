"""PPO on SMB1 World 1-1: which learning rate and entropy coefficient learn, and which collapse.

ASHA on env steps: the first rung at 50k steps (a few hundred episodes — enough for a learning
rate that cannot learn to show it) and reduction factor 3, so a 1M-step trial passes rungs at
50k, 150k and 450k; collapse detection watches each survivor for the late fall ASHA cannot see
(the mean x_pos of the last 100 episodes 40 % below its best for 4 iterations, after 100k env
steps; ``callbacks.collapse.Collapse`` says how that rule was measured).
"""

import sys

from ray import tune

from sweeps.runner import main
from sweeps.spec import PPO_SMOKE, Asha, Collapse, Sweep

SWEEP = Sweep(
    name="ppo_lr_entropy",
    algo="PPO",
    search_space={
        "lr": tune.loguniform(1e-5, 1e-3),
        "entropy_coeff": tune.loguniform(1e-4, 1e-1),
    },
    points_to_evaluate=[
        {"lr": 2.5e-4, "entropy_coeff": 0.01},  # public Mario PPO settings
        {"lr": 1e-4, "entropy_coeff": 0.01},
    ],
    max_env_steps=1_000_000,
    num_samples=16,
    asha=Asha(grace_period=50_000, reduction_factor=3),
    collapse=Collapse(),
    smoke=PPO_SMOKE,
)

if __name__ == "__main__":
    sys.exit(main(SWEEP))
