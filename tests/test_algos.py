"""PPO and DQN on real Mario emulation with tiny budgets: train, checkpoint, restore, evaluate."""

import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from ray import tune
from ray.tune.search.sample import loguniform

from algos import HParamError, dqn_config, ppo_config
from algos.checkpoints import PRETRAINED, CheckpointError, export_policy, load_policy
from algos.evaluate import evaluate, main
from callbacks.episode_recorder import EpisodeRecorder
from callbacks.periodic_evaluation import periodic_evaluation
from callbacks.records import EPISODES_KEY, EVAL_CHECKPOINT_SCORE, EVALUATION_KEY, metric_key
from envs import EnvConfigError, register_mario_env

pytestmark = pytest.mark.xdist_group("algos")  # one worker builds its module fixtures

TINY_ENV = {"max_episode_steps": 60}
TINY_PPO = {
    "train_batch_size_per_learner": 128,
    "minibatch_size": 64,
    "num_epochs": 1,
    "num_envs_per_env_runner": 2,
}
TINY = {
    "PPO": lambda: ppo_config(env_config=TINY_ENV, hparams=TINY_PPO),
    "DQN": lambda: dqn_config(
        env_config=TINY_ENV,
        hparams={
            "num_steps_sampled_before_learning_starts": 64,
            "replay_capacity": 2_000,
            "num_envs_per_env_runner": 2,
        },
        schedule_env_steps=128,
    ),
}


EVAL_EVERY = 200
"""Env steps between the trials' evaluations during training (2 greedy episodes each)."""


@pytest.fixture(scope="module", params=["PPO", "DQN"])
def trained(request, ray_session, tmp_path_factory):
    """Train 2 iterations, checkpoint, and hand (algo name, results, checkpoint path) to tests.
    The trial also evaluates itself during training, as a sweep's trial with --eval-every."""
    register_mario_env()
    evaluation = periodic_evaluation(EVAL_EVERY, 2)
    algo = TINY[request.param]().callbacks([EpisodeRecorder, evaluation]).build_algo()
    results = [algo.train() for _ in range(2)]
    path = tmp_path_factory.mktemp(request.param) / "checkpoint"
    algo.save_to_path(path)
    algo.stop()
    return request.param, results, path


@pytest.mark.slow
def test_training_reports_episode_metrics_and_growing_step_counters(trained):
    name, results, _ = trained
    steps = [r["num_env_steps_sampled_lifetime"] for r in results]
    assert 0 < steps[0] < steps[1]
    if name == "DQN":  # the budget, not DQN's own 1,000 env steps, bounds an iteration
        assert steps[0] < 1_000
    assert [r["training_iteration"] for r in results] == [1, 2]
    # 60-step episodes: several ended, so the mean return is a real number.
    assert results[-1]["env_runners"]["num_episodes_lifetime"] >= 2
    assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])


@pytest.mark.slow
def test_restored_checkpoint_continues_with_the_same_counters(trained):
    name, results, path = trained
    from ray.rllib.algorithms.algorithm import Algorithm

    algo = Algorithm.from_checkpoint(path)
    result = algo.train()
    algo.stop()
    assert result["training_iteration"] == 3
    assert result["num_env_steps_sampled_lifetime"] > results[-1]["num_env_steps_sampled_lifetime"]
    assert type(algo).__name__ == f"Mario{name}"


@pytest.mark.slow
def test_a_restored_trial_continues_its_episode_windows_and_reports_the_same_metric(trained):
    """The last-100 window and the EMAs travel in the checkpoint: the first metric after a
    restore counts the episodes before it, as an uninterrupted trial's would."""
    _, results, path = trained
    from ray.rllib.algorithms.algorithm import Algorithm

    algo = Algorithm.from_checkpoint(path)
    result = algo.train()
    algo.stop()
    episodes = [e for r in (*results, result) for e in r[EPISODES_KEY]]
    assert len(results[0][EPISODES_KEY]) > 0 and len(episodes) <= 100
    expected = sum(e["x_pos_max"] for e in episodes) / len(episodes)
    assert result[metric_key("x_pos_last100")] == pytest.approx(expected)


def _due(steps: list[int]) -> list[bool]:
    """Which results cross a multiple of EVAL_EVERY, given their lifetime env steps."""
    return [s // EVAL_EVERY > p // EVAL_EVERY for p, s in zip([0, *steps], steps, strict=False)]


@pytest.mark.slow
def test_a_trial_evaluates_itself_where_its_env_steps_cross_each_interval(trained):
    """Evaluated results carry the episodes, a finite checkpoint score and ask Tune for a
    checkpoint; the others a NaN score; every result the last evaluation's figures."""
    _, results, _ = trained
    due = _due([r["num_env_steps_sampled_lifetime"] for r in results])
    assert due[-1], "the fixture's budget must reach an evaluation in its last iteration"
    last = {"eval/flag_rate": 0.0, "eval/x_pos": 0.0, "eval/env_steps": 0}
    for result, evaluated in zip(results, due, strict=True):
        assert (EVALUATION_KEY in result) is evaluated
        assert result.get("should_checkpoint", False) is evaluated
        assert math.isnan(result[EVAL_CHECKPOINT_SCORE]) is not evaluated
        if evaluated:
            played = result[EVALUATION_KEY]
            assert len(played) == 2 and {p["env_steps"] for p in played} == {
                result["num_env_steps_sampled_lifetime"]
            }
            last = {
                "eval/flag_rate": sum(p["flag_get"] for p in played) / 2,
                "eval/x_pos": sum(p["x_pos"] for p in played) / 2,
                "eval/env_steps": result["num_env_steps_sampled_lifetime"],
            }
        assert {k: result[k] for k in last} == last


@pytest.mark.slow
def test_an_evaluation_during_training_plays_what_the_saved_checkpoint_plays(trained):
    """The last iteration's evaluation used the weights its checkpoint holds: played again from
    that checkpoint by ``algos.evaluate`` (same seeds), the episodes are the same."""
    _, results, path = trained
    during = [(p["x_pos"], p["length"], p["episode_return"]) for p in results[-1][EVALUATION_KEY]]
    again = evaluate(load_policy(path), episodes=2, seed=0)
    assert during == [(r.x_pos, r.length, r.total_return) for r in again]


@pytest.mark.slow
def test_a_restored_trial_keeps_its_evaluation_schedule(trained):
    """The schedule travels in the checkpoint: the first result after a restore is evaluated
    only where an uninterrupted trial's would have been, and carries the same last figures."""
    _, results, path = trained
    from ray.rllib.algorithms.algorithm import Algorithm

    algo = Algorithm.from_checkpoint(path)
    result = algo.train()
    algo.stop()
    steps = [r["num_env_steps_sampled_lifetime"] for r in (*results, result)]
    assert (EVALUATION_KEY in result) is _due(steps)[-1]
    if not _due(steps)[-1]:
        assert result["eval/env_steps"] == results[-1]["eval/env_steps"]


@pytest.mark.slow
def test_evaluation_video_frames_change_over_time(trained, tmp_path):
    _, _, path = trained
    video = tmp_path / "best.mp4"
    results = evaluate(load_policy(path), episodes=2, video=video)
    assert len(results) == 2
    frames = iio.imread(video)
    best = max(results, key=lambda r: (r.x_pos, r.total_return))
    # The video is the best episode, frame by frame: one frame per step plus the reset frame.
    # (Whether Mario walks depends on the barely trained policy's greedy action; the HUD timer
    # and the level's animations change the picture either way.)
    assert frames.shape[0] == best.frames == best.length + 1
    assert frames.shape[1:] == (240, 256, 3)
    distinct = {f.tobytes() for f in frames[:: max(1, len(frames) // 20)]}
    assert len(distinct) >= min(10, len(frames) // 2)


@pytest.mark.slow
def test_evaluate_cli_prints_one_row_per_episode(trained, capsys):
    _, _, path = trained
    assert main([str(path), "--episodes", "3", "--sample"]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = [line for line in table if "SuperMarioBros-1-1-v0" in line]
    assert len(rows) == 3 and any(line.strip().startswith("mean") for line in table)


@pytest.mark.slow
def test_evaluate_on_held_out_task_keeps_the_trained_action_set(trained):
    _, _, path = trained
    results = evaluate(load_policy(path), episodes=1, tasks=["SuperMarioBros3-1-1-v0"])
    assert results[0].task_id == "SuperMarioBros3-1-1-v0"


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and "\n" not in err


def _cli_error(args: list[str], capsys) -> str:
    """Run the evaluate CLI, require exit status 2, and return its one stderr line."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


@pytest.mark.parametrize("seed", ["-1", "2147483648", "abc"])
def test_evaluate_cli_rejects_a_seed_outside_31_bits_in_one_line(seed, tmp_path, capsys):
    err = _cli_error([str(tmp_path / "nowhere"), "--seed", seed], capsys)
    assert err == (
        f"error: argument --seed: {seed} is not allowed; allowed: an integer in [0, 2147483647]"
    )


@pytest.mark.parametrize("episodes", ["0", "-3", "1000000000000"])
def test_evaluate_cli_rejects_fewer_than_one_episode_in_one_line(episodes, tmp_path, capsys):
    err = _cli_error([str(tmp_path / "nowhere"), "--episodes", episodes], capsys)
    assert err == (
        f"error: argument --episodes: {episodes} is not allowed; allowed: an integer in [1, 10000]"
    )


@pytest.mark.parametrize(
    ("video", "problem"),
    [
        ("/proc/nope/x.mp4", "/proc does not take new files"),
        ("{tmp}/clip.mp4", "it is a directory"),
        ("{tmp}/file/x.mp4", "{tmp}/file is not a directory"),
        ("{tmp}/clip.avi", "it does not end in .mp4 or .gif"),
    ],
    ids=["unwritable", "directory", "under-a-file", "extension"],
)
def test_evaluate_cli_rejects_an_unwritable_video_before_loading_the_checkpoint(
    video, problem, tmp_path, capsys
):
    (tmp_path / "clip.mp4").mkdir()
    (tmp_path / "file").write_text("")
    video, problem = video.format(tmp=tmp_path), problem.format(tmp=tmp_path)
    # The checkpoint does not exist either: the cheap video check answers first.
    err = _cli_error([str(tmp_path / "nowhere"), "--video", video], capsys)
    assert err.startswith(f"error: --video {video!r} is not allowed: {problem}")
    assert err.endswith("allowed: a .mp4 or .gif file path in a writable directory")


def test_evaluate_cli_accepts_a_video_in_folders_it_will_create(tmp_path, capsys):
    video = tmp_path / "new" / "sub" / "best.gif"
    err = _cli_error([str(tmp_path / "nowhere"), "--video", str(video)], capsys)
    assert "checkpoint" in err and "does not exist" in err
    assert not (tmp_path / "new").exists()  # nothing is created before the episodes are played


@pytest.mark.slow
def test_an_exported_policy_holds_the_checkpoints_weights_in_a_fraction_of_its_bytes(
    trained, tmp_path
):
    _, _, path = trained
    exported = export_policy(path, tmp_path / "policy")
    original, small = load_policy(path), load_policy(exported)
    assert small.algo == original.algo and small.env_config == original.env_config
    for name, weight in original.module.state_dict().items():
        # float16 keeps 11 significant bits: each weight within a relative 2**-11.
        assert torch.allclose(small.module.state_dict()[name], weight, rtol=2**-11, atol=1e-7)
    nbytes = lambda root: sum(f.stat().st_size for f in root.rglob("*") if f.is_file())  # noqa: E731
    assert nbytes(exported) < nbytes(path) / 2
    assert len(evaluate(small, episodes=1)) == 1


def test_export_refuses_an_existing_destination_and_a_missing_checkpoint(tmp_path, capsys):
    from algos.export_policy import main as export_main

    (tmp_path / "taken").mkdir()
    assert export_main([str(PRETRAINED), str(tmp_path / "taken")]) == 2
    assert "exists; give a new directory" in capsys.readouterr().err
    assert list((tmp_path / "taken").iterdir()) == []
    assert export_main([str(tmp_path / "nowhere"), str(tmp_path / "new")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no dest, no temporary dir


PRETRAINED_FLAG_SEED = 4
"""A seed whose greedy protocol episode of the pretrained agent reaches the flag (BENCHMARKS.md,
"The pretrained agent": its evaluation, episode by episode)."""


def test_evaluate_with_no_checkpoint_plays_the_pretrained_agent_to_the_flag(capsys):
    argv = ["--episodes", "1", "--seed", str(PRETRAINED_FLAG_SEED)]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"PPO checkpoint {PRETRAINED}"
    row = next(line for line in out if "SuperMarioBros-1-1-v0" in line).split()
    assert row[-2] == "yes"  # the flag column


def test_the_pretrained_agent_holds_no_secret_or_local_path():
    shipped = b"".join(f.read_bytes() for f in PRETRAINED.rglob("*") if f.is_file())
    for needle in (b"postgres", b"password", b"WANDB_API_KEY", b"/work/", b"/home/", b"/tmp/"):
        assert needle not in shipped


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    bad = tmp_path / "ckpt"
    (bad / "learner_group/learner/rl_module/default_policy").mkdir(parents=True)
    (bad / "class_and_ctor_args.pkl").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="could not be read") as err:
        load_policy(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("build", "hparams", "message"),
    [
        (ppo_config, {"lr": -1e-3}, "PPO lr=-0.001 is out of range"),
        (ppo_config, {"gamma": 1.5}, "PPO gamma=1.5 is out of range; allowed: a number in [0, 1]"),
        (ppo_config, {"learning_rate": 1e-3}, "PPO has no hyperparameter 'learning_rate'"),
        (
            ppo_config,
            {"train_batch_size_per_learner": 256, "minibatch_size": 512},
            "minibatch_size=512 is larger than train_batch_size_per_learner=256",
        ),
        (ppo_config, {"lr": loguniform(1e-5, 2.0)}, "reaching 2.0"),
        (ppo_config, {"num_epochs": 0}, "PPO num_epochs=0 is out of range"),
        (dqn_config, {"n_step": 0}, "DQN n_step=0 is out of range"),
        (dqn_config, {"epsilon_final": 1.5}, "DQN epsilon_final=1.5 is out of range"),
        (dqn_config, {"entropy_coeff": 0.01}, "DQN has no hyperparameter 'entropy_coeff'"),
    ],
)
def test_bad_hyperparameters_fail_fast_with_their_message(build, hparams, message):
    with pytest.raises(HParamError) as err:
        build(hparams=hparams)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("build", "hparams", "message"),
    [
        (ppo_config, {"lr": float("nan")}, "PPO lr=nan is not a finite number; allowed: a number"),
        (
            ppo_config,
            {"grad_clip": float("inf")},
            "PPO grad_clip=inf is not a finite number; allowed: a finite number > 0",
        ),
        (
            ppo_config,
            {"kl_coeff": float("nan")},
            "PPO kl_coeff=nan is not a finite number; allowed: a finite number >= 0",
        ),
        (
            dqn_config,
            {"training_intensity": float("inf")},
            "DQN training_intensity=inf is not a finite number; allowed: a finite number > 0",
        ),
        (ppo_config, {"lr": tune.choice([1e-4, float("nan")])}, "reaching nan is not a finite"),
    ],
)
def test_nan_and_infinite_hyperparameters_are_rejected(build, hparams, message):
    with pytest.raises(HParamError) as err:
        build(hparams=hparams)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("build", "hparams", "message"),
    [
        (
            ppo_config,
            {"train_batch_size_per_learner": 2**21, "minibatch_size": 64},
            "PPO train_batch_size_per_learner=2097152 is out of range; "
            "allowed: an integer in [1, 1048576]",
        ),
        (ppo_config, {"minibatch_size": 2**21}, "PPO minibatch_size=2097152 is out of range"),
        (ppo_config, {"num_epochs": 1001}, "allowed: an integer in [1, 1000]"),
        (ppo_config, {"num_envs_per_env_runner": 257}, "allowed: an integer in [1, 256]"),
        (ppo_config, {"rollout_fragment_length": 2**21}, "allowed: an integer in [1, 1048576]"),
        (dqn_config, {"replay_capacity": 10**8}, "allowed: an integer in [1, 10000000]"),
        (dqn_config, {"epsilon_timesteps": 2**63}, "allowed: an integer in [1, 1000000000000]"),
        (dqn_config, {"target_network_update_freq": 10**13}, "an integer in [1, 1000000000000]"),
        (
            dqn_config,
            {"num_steps_sampled_before_learning_starts": 10**13},
            "allowed: an integer in [0, 1000000000000]",
        ),
    ],
)
def test_integer_hyperparameters_have_finite_upper_bounds(build, hparams, message):
    with pytest.raises(HParamError) as err:
        build(hparams=hparams)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        (
            {"minibatch_size": 512.0},
            "PPO minibatch_size=512.0 is not an integer; allowed: an integer in [1, 1048576]",
        ),
        ({"num_epochs": True}, "PPO num_epochs=True is not an integer"),
        (
            {"minibatch_size": tune.uniform(32, 256)},
            "PPO minibatch_size=Float(32, 256) is a float search domain; allowed: an integer in "
            "[1, 1048576] (tune.randint, tune.qrandint or tune.choice of integers)",
        ),
        (
            {"minibatch_size": tune.choice([64, 128.0])},
            "PPO minibatch_size=Categorical[64, 128.0] reaching 128.0 is not an integer",
        ),
    ],
)
def test_integer_hyperparameters_reject_floats(hparams, message):
    with pytest.raises(HParamError) as err:
        ppo_config(hparams=hparams)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "domain",
    [tune.randint(32, 257), tune.qrandint(32, 256, 32), tune.choice([32, 64, 128])],
    ids=["randint", "qrandint", "choice"],
)
def test_integer_search_domains_are_accepted_for_integer_hyperparameters(domain):
    config = ppo_config(hparams={"minibatch_size": domain})
    assert config.minibatch_size is domain


def test_quantized_integer_domain_is_checked_at_its_inclusive_upper_end():
    # qrandint(7, 1001, 7) can draw 1001 itself, one past num_epochs' limit of 1000.
    with pytest.raises(HParamError, match="reaching 1001 is out of range"):
        ppo_config(hparams={"num_epochs": tune.qrandint(7, 1001, 7)})


def test_bad_env_config_fails_in_the_builder():
    with pytest.raises(EnvConfigError, match="frame_skip"):
        ppo_config(env_config={"frame_skip": 0})


def test_builders_do_not_mutate_their_inputs():
    hparams, env_config = {"lr": 1e-4}, {"world": 1, "stage": 2}
    ppo_config(env_config=env_config, hparams=hparams)
    assert hparams == {"lr": 1e-4} and env_config == {"world": 1, "stage": 2}


def test_default_trial_fits_in_one_cpu():
    from ray.rllib.algorithms.dqn import DQN
    from ray.rllib.algorithms.ppo import PPO

    for algo_class, build in ((PPO, ppo_config), (DQN, dqn_config)):
        request = algo_class.default_resource_request(build())
        assert request.required_resources.get("CPU") == 1.0


def test_a_slow_sample_is_waited_for_not_dropped():
    # RLlib's default (60 s) drops a late sample: on a loaded machine an iteration then trained
    # on nothing and reported 0 env steps (a CI failure). Both trainers wait however long it takes.
    for build in (ppo_config, dqn_config):
        assert build().sample_timeout_s is None


def test_the_fast_learner_path_updates_parameters_exactly_as_rllibs_own_path():
    """``_FastTorchLearner.apply_gradients`` uses RLlib internals (``_params``,
    ``_module_optimizers``); if RLlib changes under it, this fails before a sweep learns wrong."""
    import copy

    from ray.rllib.core.learner.torch.torch_learner import TorchLearner

    from envs import MarioEnv

    register_mario_env()
    env = MarioEnv()
    spaces = (env.observation_space, env.action_space)
    learner = ppo_config(hparams={"lr": 1e-3}).build_learner(
        spaces={"__env__": spaces, "default_policy": spaces}
    )
    env.close()
    before = {pid: p.detach().clone() for pid, p in learner._params.items()}
    grads = {pid: torch.randn_like(p) for pid, p in learner._params.items()}
    state = copy.deepcopy(learner.get_state())
    learner.apply_gradients(grads)
    fast = {pid: p.detach().clone() for pid, p in learner._params.items()}
    learner.set_state(state)
    TorchLearner.apply_gradients(learner, grads)
    assert all(torch.equal(fast[pid], p.detach()) for pid, p in learner._params.items())
    assert any(not torch.equal(fast[pid], before[pid]) for pid in before)


@pytest.mark.slow
def test_greedy_evaluation_differs_per_episode_and_replays_with_its_seed(trained):
    from algos.evaluate import Protocol

    _, _, path = trained
    policy = load_policy(path)
    plain = evaluate(policy, episodes=3, protocol=Protocol(sticky=0.0, noop_max=0))
    # The emulator is deterministic: a greedy policy from the same start replays one episode.
    assert len({(r.x_pos, r.total_return, r.length) for r in plain}) == 1
    # A trial trained with sticky actions and random starts is evaluated by the protocol alone.
    policy.env_config = {**policy.env_config, "sticky_actions": 0.9, "noop_max": 30}
    assert evaluate(policy, episodes=3, protocol=Protocol(sticky=0.0, noop_max=0)) == plain
    first = evaluate(policy, episodes=6, protocol=Protocol(), seed=7)
    again = evaluate(policy, episodes=6, protocol=Protocol(), seed=7)
    assert first == again
    assert len({r.noops for r in first}) >= 2 and all(0 <= r.noops <= 30 for r in first)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sticky", "1"], "--sticky: 1 is not allowed; allowed: a number in [0, 1)"),
        (["--sticky", "nan"], "--sticky: nan is not allowed"),
        (["--noop-max", "-1"], "--noop-max: -1 is not allowed"),
    ],
)
def test_evaluate_cli_rejects_a_bad_protocol_in_one_line(argv, message, tmp_path, capsys):
    assert main([str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def _learner_values(result: dict) -> tuple:
    learner = result["learners"]["default_policy"]
    used = learner["lr_used"]
    return (
        result["num_env_steps_sampled_lifetime"],
        used if isinstance(used, list) else [used],
        learner["curr_entropy_coeff"],
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape",
    [
        {"lr": [[0, 1e-3], [256, 1e-4]], "entropy_coeff": [[0, 0.02], [256, 0.0]]},
        {"lr": 1e-3, "lr_decay_to": 0.1, "entropy_coeff": 0.02, "entropy_decay_to": 0.0},
    ],
    ids=["schedule", "decay-shape"],
)
def test_schedules_and_decay_shapes_reach_the_optimizer_and_the_loss(shape, ray_session):
    register_mario_env()
    config = ppo_config(env_config=TINY_ENV, hparams={**TINY_PPO, **shape}, schedule_env_steps=256)
    algo = config.build_algo()
    try:
        seen = [_learner_values(algo.train()) for _ in range(3)]
    finally:
        algo.stop()
    for steps, used, entropy in seen:
        progress = min(steps / 256, 1.0)
        # Linear from the start value to the end value over 256 env steps, then held.
        assert all(lr == pytest.approx(1e-3 + (1e-4 - 1e-3) * progress, rel=1e-6) for lr in used)
        assert entropy == pytest.approx(0.02 * (1 - progress), abs=1e-9)
    assert seen[0][1][0] > seen[-1][1][0]


def test_a_decay_shape_needs_the_budget_it_decays_over():
    with pytest.raises(HParamError) as err:
        ppo_config(hparams={"lr_decay_to": 0.1})
    assert "lr_decay_to decays over the trial's budget" in str(err.value)


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        ({"lr": [[0, 1e-3], [100, 1e-4], [50, 1e-5]]}, "has steps that do not increase"),
        ({"lr": [[0, 1e-3], [100, -1e-4]]}, "has a value -0.0001 that is out of range"),
        ({"lr": [[5, 1e-3], [100, 1e-4]]}, "starts at step 5, not 0"),
        ({"lr": [[0, 1e-3]]}, "is not a schedule of two or more [env_step, value] pairs"),
        ({"entropy_coeff": [[0, 0.01], [float("nan"), 0.0]]}, "has a step that is not a finite"),
        ({"gamma": [[0, 0.9], [100, 0.99]]}, "PPO gamma=[[0, 0.9], [100, 0.99]] is not a number"),
        (
            {"lr": [[0, 1e-3], [100, 1e-4]], "lr_decay_to": 0.5},
            "lr_decay_to shapes a fixed lr, but lr=[[0, 0.001], [100, 0.0001]] is already",
        ),
        ({"lr_decay_to": 0.0}, "PPO lr_decay_to=0.0 is out of range; allowed: a number in (0, 1]"),
        ({"entropy_decay_to": 1.5}, "PPO entropy_decay_to=1.5 is out of range"),
    ],
)
def test_bad_schedules_fail_fast_with_one_line(hparams, message):
    with pytest.raises(HParamError) as err:
        ppo_config(hparams=hparams, schedule_env_steps=1000)
    assert message in str(err.value) and "\n" not in str(err.value)
