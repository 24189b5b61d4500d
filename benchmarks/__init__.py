"""Benchmark scripts (run as ``python benchmarks/<name>.py``); an installed package so they
import each other by name."""

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


def with_train_batch(ppo_hparams: dict, train_batch: int) -> dict:
    """PPO hyperparameters sampling ``train_batch`` env steps per iteration, with minibatches no
    larger than it (RLlib refuses a minibatch larger than the batch)."""
    return {
        **ppo_hparams,
        "train_batch_size_per_learner": train_batch,
        "minibatch_size": min(ppo_hparams["minibatch_size"], train_batch),
    }


@contextlib.contextmanager
def ray_running(**init_args: Any) -> Iterator[None]:
    """A local Ray for one benchmark, with everything printed meanwhile sent to stderr.

    Ray prints a raylet's error lines ("A worker died ...") to stdout even with
    ``log_to_driver=False``, and stdout is where ``--json`` output goes (``> bench.json``).
    """
    import ray

    with contextlib.redirect_stdout(sys.stderr):
        ray.init(include_dashboard=False, log_to_driver=False, **init_args)
        try:
            yield
        finally:
            ray.shutdown()
