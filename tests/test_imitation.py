"""Behaviour cloning on recorded demonstrations, and PPO that starts from the cloned weights.

The teacher is a scripted player recorded through ``DemoRecorder`` in the real env, as a person's
play would be: run right (right+B) and jump (right+A+B) for 8 steps when blocked or every 200
pixels. Its actions follow from what the frames show, so BC can learn them; nothing else here is
scripted: RLlib's BC reads the Parquet rows through Ray Data and trains our PPO module.
"""

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from algos import ppo_config
from algos.imitation import bc_config, module_weights
from envs import register_mario_env, validate_env_config
from envs.config import training_env_config
from envs.demonstrations import DemoError, DemoRecorder
from tests.helpers import JUMP, RUN, record_two_frame_stacks, scripted_play
from tests.helpers import SCRIPTED_ENV as ENV

pytestmark = pytest.mark.xdist_group("imitation")  # one worker builds its module fixtures

BC_ITERATIONS = 8


def greedy_accuracy(module, steps) -> float:
    obs = torch.from_numpy(np.stack([o for o, _ in steps]))
    with torch.no_grad():
        logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    return float(np.mean(logits.argmax(-1).numpy() == np.array([a for _, a in steps])))


def policy_module(algo):
    return algo.learner_group._learner.module["default_policy"]


@pytest.fixture(scope="module")
def cloned(ray_session, tmp_path_factory):
    """Demonstrations of 6 scripted episodes, a BC trainer on them, and 2 held-out episodes."""
    register_mario_env()
    demos = tmp_path_factory.mktemp("imitation") / "demos"
    config = validate_env_config(training_env_config(ENV))
    scripted_play(range(6), DemoRecorder(demos, config, source="person:script"))
    held_out = scripted_play([100, 101])
    hparams = {"lr": 5e-4, "train_batch_size_per_learner": 64, "dataset_num_iters_per_learner": 16}
    bc = bc_config(demos, env_config=ENV, hparams=hparams).build_algo()
    before = greedy_accuracy(policy_module(bc), held_out)
    losses = [bc.train()["learners"]["default_policy"]["policy_loss"] for _ in range(BC_ITERATIONS)]
    checkpoint = demos.parent / "bc-checkpoint"
    bc.save_to_path(checkpoint)
    yield bc, held_out, before, losses, checkpoint
    bc.stop()


@pytest.mark.slow
def test_bc_clones_the_demonstrated_actions_on_held_out_steps(cloned):
    bc, held_out, before, losses, _ = cloned
    majority = max(np.mean([a == k for _, a in held_out]) for k in (RUN, JUMP))
    after = greedy_accuracy(policy_module(bc), held_out)
    assert losses[-1] < losses[0] / 2
    assert after >= 0.8 and after > majority + 0.1 and after > before + 0.1


@pytest.mark.slow
def test_ppo_starts_from_the_cloned_weights_and_plays_like_the_clone(cloned):
    bc, held_out, _, _, checkpoint = cloned
    ppo = ppo_config(
        env_config=ENV,
        hparams={
            "num_env_runners": 0,
            "train_batch_size_per_learner": 128,
            "minibatch_size": 64,
            "num_epochs": 1,
            "num_envs_per_env_runner": 1,
            "lr": 2e-5,
            "vf_loss_coeff": 0.01,
        },
        init_weights=module_weights(checkpoint),
    ).build_algo()
    cloned_state = policy_module(bc).state_dict()
    arrived = policy_module(ppo).state_dict()
    assert arrived.keys() == cloned_state.keys()
    assert all(torch.equal(arrived[k], cloned_state[k]) for k in cloned_state)
    # The env runner that samples plays the cloned weights too (RLlib synced them at setup).
    acting = ppo.env_runner.module
    assert greedy_accuracy(acting, held_out) == greedy_accuracy(policy_module(bc), held_out)
    ppo.train()
    assert greedy_accuracy(policy_module(ppo), held_out) >= 0.8
    ppo.stop()


def test_bc_refuses_demonstrations_of_another_frame_stack(tmp_path):
    demos = record_two_frame_stacks(tmp_path / "demos")
    with pytest.raises(DemoError, match="recorded with frame_stack 2; the trainer's is 4"):
        bc_config(demos)
