"""How a trial's speed and memory are measured: an algorithm's own sampling and ``train()``
timed after a warm-up, its learner update timed apart, and the peak RSS of its processes. Used by
``benchmarks/run.py`` and ``benchmarks/ablations.py``."""

import os
import threading
import time

import psutil


class PeakRss:
    """Polls the summed RSS of some processes every ``interval`` s and keeps the peak.

    RSS counts shared pages (torch's libraries, Ray's object store mappings) once per process, so
    the sum is an upper bound of what the processes need together.
    """

    def __init__(self, pids: list[int], interval: float = 0.1):
        self.processes = [psutil.Process(pid) for pid in pids]
        self.interval = interval
        self.peak = 0
        self.peak_by_process = [0] * len(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def by_process(self) -> list[int]:
        sizes = []
        for process in self.processes:
            try:
                sizes.append(process.memory_info().rss)
            except psutil.Error:
                sizes.append(0)
        return sizes

    def current(self) -> int:
        return sum(self.by_process())

    def _poll(self) -> None:
        while not self._stop.is_set():
            sizes = self.by_process()
            self.peak = max(self.peak, sum(sizes))
            self.peak_by_process = [
                max(a, b) for a, b in zip(self.peak_by_process, sizes, strict=True)
            ]
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def trial_pids(algo) -> list[int]:
    """The processes of one trial: this process (main process + local learner) and its runners."""
    runners = algo.env_runner_group.foreach_env_runner(
        lambda runner: os.getpid(), local_env_runner=False
    )
    return [os.getpid(), *runners]


def runner_torch_threads(algo) -> list[int]:
    def threads(runner) -> int:
        import torch

        return torch.get_num_threads()

    return algo.env_runner_group.foreach_env_runner(threads, local_env_runner=False)


def sampling_steps_per_second(algo, seconds: float) -> float:
    """Env steps/s of the algorithm's own sampling call (episodes come back to this process)."""
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    def sample() -> int:
        episodes = synchronous_parallel_sample(
            worker_set=algo.env_runner_group,
            max_env_steps=algo.config.total_train_batch_size,
            _uses_new_env_runners=True,
        )
        return sum(len(e) for e in episodes)

    sample()  # warm-up: first forward passes, env resets
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += sample()
    return steps / (time.perf_counter() - start)


class Stopwatch:
    """Wraps a callable and adds up the wall time spent in it."""

    def __init__(self, function):
        self.function = function
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def warm_up(algo, until_env_steps: int = 0) -> dict:
    """One ``train()``, then more until ``until_env_steps`` were sampled (DQN's learning start)."""
    result = algo.train()
    while result["num_env_steps_sampled_lifetime"] < until_env_steps:
        result = algo.train()
    return result


def training_steps_per_second(algo, iterations: int, last: dict, after_iteration=None) -> dict:
    """Env steps/s of ``algo.train()`` over ``iterations`` iterations after ``last`` result.

    The learner update is timed around ``learner_group.update`` (RLlib's own timers are moving
    averages that remember the warm-up); the rest of an iteration is sampling, moving episodes to
    this process, weight sync and, for DQN, the replay buffer.
    """
    learner = algo.learner_group.update = Stopwatch(algo.learner_group.update)
    steps0, start = last["num_env_steps_sampled_lifetime"], time.perf_counter()
    for _ in range(iterations):
        result = algo.train()
        if after_iteration is not None:
            after_iteration()
    elapsed = time.perf_counter() - start
    steps = result["num_env_steps_sampled_lifetime"] - steps0
    return {
        "env_steps_per_s": steps / elapsed,
        "seconds_per_iteration": elapsed / iterations,
        "env_steps_per_iteration": steps / iterations,
        "learner_s_per_iteration": learner.seconds / iterations,
        "sampling_and_rest_s_per_iteration": (elapsed - learner.seconds) / iterations,
    }
