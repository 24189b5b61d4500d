"""Mario-ready RLlib ``AlgorithmConfig``s for PPO and DQN: config in, config out, no globals.

``ppo_config(hparams={"lr": 3e-4})`` returns a new ``PPOConfig`` on the new API stack (torch,
RLModule + Learner) for the registered ``"mario"`` env, sized so a trial schedules on our 2-core
machine (1 CPU: the main process with its local learner plus one env runner at 0.5 CPU each) and
grows with ``num_env_runners`` when a cluster has more cores. Every name a caller passes is
validated (``algos.hparams``) before anything touches Ray.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.lambda_defaultdict import LambdaDefaultDict
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.rllib.utils.schedules.piecewise_schedule import PiecewiseSchedule
from ray.rllib.utils.schedules.scheduler import Scheduler

from algos.algorithms import BC_ITERATIONS, CLONE_FOLDER, MarioDQN, MarioPPO
from algos.hparams import DQN_RULES, PPO_RULES, HParamError, check_hparams
from algos.model import MarioDQNModule, MarioPPOModule, mario_model_config
from envs import ENV_NAME
from envs.config import training_env_config

if TYPE_CHECKING:
    from ray.rllib.core.learner.torch.torch_learner import TorchLearner

    # The learner mixins below are mixed into RLlib's torch learners and use their attributes;
    # the checker sees that base, runtime keeps ``object`` (the MRO stays as it is).
    _LearnerBase = TorchLearner
else:
    _LearnerBase = object

__all__ = [
    "BUILDERS",
    "PPO_DEFAULTS",
    "DQN_DEFAULTS",
    "MarioDQNLearner",
    "MarioPPOLearner",
    "Resources",
    "ppo_config",
    "dqn_config",
    "scheduled_value",
    "schedule_of",
    "LR_USED_KEY",
]


# Measured side by side against wave 1's (gamma 0.95, batch 1024 x 4 epochs, simple actions) on
# 1-1, same seed, 500k env steps each (BENCHMARKS.md, "Learning"): mean x_pos over the last 50k
# steps 1,756 against 838, training flag rate 15 % against 0.2 %, first flag at 58k against 172k
# env steps, at 22 % fewer env steps per second (2048 x 8 epochs cost more learner time).
PPO_DEFAULTS: dict[str, Any] = {
    "lr": 2.5e-4,
    "gamma": 0.9,
    "lambda_": 0.95,
    "entropy_coeff": 0.01,
    "clip_param": 0.2,
    "vf_loss_coeff": 0.5,
    # RLlib clamps the value loss at vf_clip_param; with rewards /10 returns stay below ~30.
    "vf_clip_param": 100.0,
    "use_kl_loss": False,
    "grad_clip": 0.5,
    "train_batch_size_per_learner": 2048,
    "minibatch_size": 256,
    "num_epochs": 8,
    "num_env_runners": 1,
    # 16 envs per runner batch 16 observations per forward pass: sampling 9-10 % faster than 4
    # envs and 5-6 % faster than 8 (BENCHMARKS.md); 128 steps per env per 2048-step batch.
    "num_envs_per_env_runner": 16,
}

DQN_DEFAULTS: dict[str, Any] = {
    "lr": 1e-4,
    "gamma": 0.99,
    "n_step": 3,
    "double_q": True,
    "dueling": True,
    "target_network_update_freq": 2000,
    "tau": 1.0,
    "grad_clip": 10.0,
    "train_batch_size_per_learner": 32,
    # RLlib's episode buffer keeps each stacked 4x84x84 uint8 observation once (28,224 B): about
    # 25 KiB of RSS per buffered step measured. A DQN sweep with 2 concurrent default trials and
    # full buffers peaked at 7.2 GiB for all its processes together (BENCHMARKS.md).
    "replay_capacity": 50_000,
    "num_steps_sampled_before_learning_starts": 5_000,
    "epsilon_final": 0.02,
    "epsilon_timesteps": 100_000,
    "num_env_runners": 1,
    "num_envs_per_env_runner": 4,
    # RLlib samples n_step (3) steps per env and then learns: 12 env steps per remote call,
    # weight sync and buffer insert. 24 steps per env with RLlib's training intensity keeps the
    # same one 32-sample update per 12 sampled steps (8 per call) with one env runner, 30 %
    # faster in a default trial (BENCHMARKS.md); the acting policy lags the learner by <= 96 steps.
    "rollout_fragment_length": 24,
    "training_intensity": 4 / 3,
}


DECAYS = {"lr": "lr_decay_to", "entropy_coeff": "entropy_decay_to"}
"""The searchable shape of a schedule: the fraction of the start value reached at the budget's end.
They travel as plain attributes of the AlgorithmConfig (RLlib keeps unknown keys through
``to_dict``/``update_from_dict``), so Tune samples them like any other key; the learner turns
them into RLlib schedules once it sees the trial's resolved config."""
SCHEDULE_HORIZON = "schedule_env_steps"
"""The AlgorithmConfig attribute holding the budget a ``*_decay_to`` decays over."""


def schedule_of(config: AlgorithmConfig, name: str) -> float | list:
    """``config.<name>`` (a value or RLlib schedule), or the linear schedule from its value to
    ``<name>_decay_to`` x that value at the end of the budget.

    >>> config = PPOConfig().training(lr=1e-3)
    >>> config.lr_decay_to, config.schedule_env_steps = 0.1, 1000
    >>> schedule_of(config, "lr")
    [[0, 0.001], [1000, 0.0001]]
    """
    value = getattr(config, name)
    fraction = getattr(config, DECAYS[name], None)
    if fraction is None:
        return value
    return [[0, value], [getattr(config, SCHEDULE_HORIZON), value * fraction]]


class _FastTorchLearner(_LearnerBase):
    """Two CPU savings in RLlib's torch learner, behaviour unchanged.

    - Adam with PyTorch's fused CPU kernel instead of the per-tensor loop.
    - One finiteness check over all gradients (their total norm) instead of RLlib's two
      ``isfinite`` passes per parameter tensor. Non-finite gradients still go through RLlib's own
      handling (zeroed, with a warning).

    Measured side by side (``benchmarks/ablations.py``, BENCHMARKS.md): a default DQN trial's
    learner time fell by 36-38 %; a PPO learner update (1024 steps x 4 epochs, with
    ``algos.model``'s channels-last weights, 2 threads) by 15-17 %.
    """

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        params = self.get_parameters(self.module[module_id])
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params, fused=True),
            params=params,
            lr_or_lr_schedule=schedule_of(config, "lr"),
        )

    def apply_gradients(self, gradients_dict) -> None:
        grads = [g for g in gradients_dict.values() if g is not None]
        plain = self._grad_scalers is None and self._lr_scheduler_classes is None
        if not plain or not grads or not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return super().apply_gradients(gradients_dict)
        for pid, grad in gradients_dict.items():
            self._params[pid].grad = grad
        for module_id, optimizer_names in self._module_optimizers.items():
            for optimizer_name in optimizer_names:
                self.get_optimizer(module_id, optimizer_name).step()


LR_USED_KEY = "lr_used"


def scheduled_value(value_or_schedule: Any, env_steps: int) -> float:
    """A fixed value, or an RLlib ``[[step, value], ...]`` schedule at ``env_steps`` (linear in
    between, the last value after it: what RLlib's own ``Scheduler`` computes)."""
    if not isinstance(value_or_schedule, list | tuple):
        return float(value_or_schedule)
    schedule = PiecewiseSchedule(
        [tuple(point) for point in value_or_schedule],
        outside_value=value_or_schedule[-1][-1],
        framework=None,
    )
    return float(schedule.value(env_steps))


class _ConfiguredLearningRate(_LearnerBase):
    """Every update starts with the learning rate the trial's config says.

    RLlib restores an optimizer's ``param_groups`` (its lr included) with the optimizer state and
    re-applies the configured lr only *after* the next update. So a PBT member that continued
    from a donor's checkpoint trained its whole first iteration with the donor's lr while
    reporting its own new one (measured: 1e-3 in the optimizer, 1e-5 reported). Setting the lr
    before each update closes that gap; ``tests/test_pbt.py`` checks it end to end.
    """

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        env_steps = timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)
        for module_id in self.module.keys():
            config = self.config.get_config_for_module(module_id)
            lr = scheduled_value(schedule_of(config, "lr"), env_steps)
            for _, optimizer in self.get_optimizers_for_module(module_id):
                for group in optimizer.param_groups:
                    group["lr"] = lr

    def apply_gradients(self, gradients_dict) -> None:
        """Report the lr each optimizer step really used (``learners/<module>/lr_used``, one value
        per step), beside RLlib's configured ``default_optimizer_learning_rate``."""
        for module_id in self.module.keys():
            for _, optimizer in self.get_optimizers_for_module(module_id):
                self.metrics.log_value(
                    (module_id, LR_USED_KEY), optimizer.param_groups[0]["lr"], reduce="item_series"
                )
        super().apply_gradients(gradients_dict)


class MarioPPOLearner(_ConfiguredLearningRate, _FastTorchLearner, PPOTorchLearner):
    """RLlib's PPO torch learner, faster on CPU (see ``_FastTorchLearner``), that trains with the
    configured lr from the first update after a restore (see ``_ConfiguredLearningRate``), and
    whose entropy coefficient follows ``entropy_decay_to`` when a sweep shapes it."""

    def build(self) -> None:
        super().build()
        # RLlib's own per-module entropy Scheduler, fed the shaped schedule.
        self.entropy_coeff_schedulers_per_module = LambdaDefaultDict(
            lambda module_id: Scheduler(
                fixed_value_or_schedule=schedule_of(
                    self.config.get_config_for_module(module_id), "entropy_coeff"
                ),
                framework=self.framework,
                device=self._device,
            )
        )


class MarioDQNLearner(_ConfiguredLearningRate, _FastTorchLearner, DQNTorchLearner):
    """RLlib's DQN torch learner, faster on CPU, with the configured lr after a restore."""


@dataclass(frozen=True)
class Resources:
    """How much of a node one trial asks Ray for.

    The defaults total 1 CPU per trial with one env runner (RLlib takes max(main, learner) for
    the main process when the learner is local), so two trials run side by side on 2 cores.
    ``num_gpus_per_learner=1`` moves the learner to a GPU (the cloud YAMLs' GPU worker type).
    """

    cpus_for_main_process: float = 0.5
    cpus_per_env_runner: float = 0.5
    num_gpus_per_learner: float = 0

    @classmethod
    def whole_machine(cls, cores: int) -> "Resources":
        """One trial on ``cores`` CPUs: one env runner per core (with ``num_env_runners=cores``)
        plus the main process with the learner, which uses every core while the runners idle."""
        return cls(cpus_for_main_process=0.5, cpus_per_env_runner=(cores - 0.5) / cores)


def _common[C: AlgorithmConfig](
    config: C,
    *,
    module_class: type,
    env_config: dict | None,
    hp: dict[str, Any],
    resources: Resources,
    schedule_env_steps: int | None,
    init_weights: str | None = None,
) -> C:
    env_config = training_env_config(env_config)
    if "seed" in hp:
        config = config.debugging(seed=hp.pop("seed"))
    for decay in DECAYS.values():
        if decay in hp:
            if schedule_env_steps is None:
                raise HParamError(
                    f"{decay} decays over the trial's budget, and none was given; allowed: "
                    f"{decay} in a sweep (its budget is --max-env-steps) or with "
                    "schedule_env_steps"
                )
            setattr(config, decay, hp.pop(decay))
            setattr(config, SCHEDULE_HORIZON, schedule_env_steps)
    return (
        config.environment(ENV_NAME, env_config=env_config)
        .framework("torch")
        .env_runners(
            num_env_runners=hp.pop("num_env_runners"),
            num_envs_per_env_runner=hp.pop("num_envs_per_env_runner"),
            # RLlib types these as ints; fractions of a CPU are what Ray schedules on.
            num_cpus_per_env_runner=resources.cpus_per_env_runner,  # type: ignore[arg-type]
            # RLlib drops a sample slower than 60 s and trains on nothing that iteration (a CI
            # run on a loaded machine got an iteration of 0 env steps): wait for it instead.
            sample_timeout_s=None,
            **(
                {"rollout_fragment_length": hp.pop("rollout_fragment_length")}
                if "rollout_fragment_length" in hp
                else {}
            ),
        )
        .resources(
            num_cpus_for_main_process=resources.cpus_for_main_process  # type: ignore[arg-type]
        )
        .learners(
            num_learners=0,
            num_cpus_per_learner=resources.cpus_for_main_process,
            num_gpus_per_learner=resources.num_gpus_per_learner,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=module_class,
                model_config=mario_model_config(),
                load_state_path=init_weights,
            )
        )
    )


def ppo_config(
    *,
    env_config: dict | None = None,
    hparams: dict[str, Any] | None = None,
    resources: Resources = Resources(),
    schedule_env_steps: int | None = None,
    init_weights: str | None = None,
    clones: str | None = None,
) -> PPOConfig:
    """A PPO config for Mario: ``PPO_DEFAULTS`` overridden by ``hparams`` (values or domains).
    ``schedule_env_steps``: the budget that ``lr_decay_to`` / ``entropy_decay_to`` decay over;
    ``init_weights``: a module directory to start from (``algos.imitation.module_weights``);
    ``clones``: the folder of a BC run (``algos.imitation.clone``) whose checkpoint after
    ``bc_iterations`` (a hyperparameter, searchable) the trial starts from."""
    hparams = dict(hparams or {})
    check_hparams("PPO", {**PPO_DEFAULTS, **hparams}, PPO_RULES)
    hp = {**PPO_DEFAULTS, **hparams}
    bc_iterations = hp.pop(BC_ITERATIONS, None)
    if bc_iterations is not None and clones is None:
        raise HParamError(
            f"{BC_ITERATIONS} starts a trial from behaviour cloning, and no demonstrations were "
            f"cloned; allowed: {BC_ITERATIONS} in a sweep given --demos DIR"
        )
    config = _common(
        PPOConfig(algo_class=MarioPPO),
        module_class=MarioPPOModule,
        env_config=env_config,
        hp=hp,
        resources=resources,
        schedule_env_steps=schedule_env_steps,
        init_weights=init_weights,
    )
    if bc_iterations is not None:
        setattr(config, BC_ITERATIONS, bc_iterations)
        setattr(config, CLONE_FOLDER, str(clones))
    return config.learners(learner_class=MarioPPOLearner).training(**hp)


def dqn_config(
    *,
    env_config: dict | None = None,
    hparams: dict[str, Any] | None = None,
    resources: Resources = Resources(),
    schedule_env_steps: int | None = None,
) -> DQNConfig:
    """A DQN config for Mario (double Q, dueling, n-step, prioritized replay, epsilon decay).
    ``schedule_env_steps``: the budget (decays run over it; no iteration samples much more)."""
    hparams = dict(hparams or {})
    check_hparams("DQN", {**DQN_DEFAULTS, **hparams}, DQN_RULES)
    hp = {**DQN_DEFAULTS, **hparams}
    config = _common(
        DQNConfig(algo_class=MarioDQN),
        module_class=MarioDQNModule,
        env_config=env_config,
        hp=hp,
        resources=resources,
        schedule_env_steps=schedule_env_steps,
    )
    capacity = hp.pop("replay_capacity")
    epsilon = [(0, 1.0), (hp.pop("epsilon_timesteps"), hp.pop("epsilon_final"))]
    if schedule_env_steps is not None:
        # RLlib's DQN samples at least 1,000 env steps an iteration: a smaller budget would
        # be overrun by most of an iteration (--max-env-steps 400 ran 1,070).
        config.reporting(
            min_sample_timesteps_per_iteration=min(
                config.min_sample_timesteps_per_iteration, schedule_env_steps
            )
        )
    return config.learners(learner_class=MarioDQNLearner).training(
        replay_buffer_config={
            "type": "PrioritizedEpisodeReplayBuffer",
            "capacity": capacity,
            "alpha": 0.6,
            "beta": 0.4,
        },
        epsilon=epsilon,
        **hp,
    )


BUILDERS: dict[str, Callable[..., AlgorithmConfig]] = {"PPO": ppo_config, "DQN": dqn_config}
"""The config builder of each algorithm a sweep or benchmark may name."""
