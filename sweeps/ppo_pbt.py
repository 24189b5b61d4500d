"""PPO on SMB1 World 1-1 under population-based training: lr and entropy schedules found by PBT.

A static search picks one learning rate and one entropy coefficient for the whole run; PBT lets a
population of 8 members change them as they train. Every 50k env steps a member in the bottom
quarter by the sweep's metric copies a top-quarter member's checkpoint and perturbs both values
(x0.8 or x1.2, or a fresh draw from the search space with probability 0.25); ``--scheduler pb2``
picks the new values with PB2's GP bandit instead. Each exploit is stored (``lineage`` table) and
drawn in the report; a collapsing member is recorded and left for exploit to replace.

Sized for 2 cores: 2 members train at once and Tune pauses the others at perturbation points, so
the population advances together (8 x 1M env steps is ~8 hours here). On a cluster with 8 trial
slots (``--max-concurrent 8``, 1 CPU each) all 8 train at once: the wall-clock time of one trial.
"""

import sys

from ray import tune

from sweeps.runner import main
from sweeps.spec import PPO_SMOKE, Pbt, Sweep

SWEEP = Sweep(
    name="ppo_pbt",
    algo="PPO",
    search_space={
        "lr": tune.loguniform(1e-5, 1e-3),
        "entropy_coeff": tune.loguniform(1e-4, 1e-1),
    },
    max_env_steps=1_000_000,
    pbt=Pbt(population=8, perturbation_interval=50_000, quantile_fraction=0.25),
    smoke=PPO_SMOKE,
)

if __name__ == "__main__":
    sys.exit(main(SWEEP))
