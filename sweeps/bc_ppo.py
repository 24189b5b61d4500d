"""PPO on SMB1 World 1-1 started from behaviour cloning: how much BC, and which fine-tuning lr
and entropy coefficient, make the most of a few demonstrations.

    python sweeps/bc_ppo.py --demos DIR [--smoke]

Before any trial, RLlib's BC clones ``--demos`` once (recorded with ``python -m algos.evaluate
CHECKPOINT --record-demos DIR --only-flags`` or ``python -m envs.play --record DIR``) and keeps
its checkpoint after 10, 20 and 40 iterations; each trial starts PPO from the clone its
``bc_iterations`` names, or from scratch for 0, so the sweep holds its own pure-RL control and
the report and ``python -m sweeps.compare`` say whether the clone helped. BC costs no env steps:
every trial's budget is PPO's alone. BC trains the policy head only, so the value head starts
untrained on the convolutions the clone shaped; a value coefficient of 0.1 keeps its first large
errors from overwriting them (RLlib's own BC-then-PPO example uses 0.01 and lr 2e-5).
"""

import sys

from ray import tune

from sweeps.runner import main
from sweeps.spec import PPO_SMOKE, Asha, Imitation, Sweep

SWEEP = Sweep(
    name="bc_ppo",
    algo="PPO",
    search_space={
        "bc_iterations": tune.choice([0, 10, 20, 40]),
        "lr": tune.loguniform(2e-5, 3e-4),
        "entropy_coeff": tune.loguniform(1e-4, 3e-2),
    },
    points_to_evaluate=[
        {"bc_iterations": 20, "lr": 1e-4, "entropy_coeff": 0.01},
        {"bc_iterations": 0, "lr": 2.5e-4, "entropy_coeff": 0.01},  # PPO from scratch
    ],
    hparams={"vf_loss_coeff": 0.1},
    max_env_steps=500_000,
    num_samples=12,
    asha=Asha(grace_period=50_000, reduction_factor=3),
    imitation=Imitation(),
    smoke=PPO_SMOKE,
)

if __name__ == "__main__":
    sys.exit(main(SWEEP))
