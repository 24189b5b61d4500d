"""The ``"mario"`` env: shapes, seeding, action sets, curricula, shaping, facts and bad configs."""

import collections
import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import EPISODE_FACTS, EnvConfigError, MarioEnv, mario_env_creator, validate_env_config
from envs.actions import ACTION_SETS

SEED = 7
GAME_TASKS = {
    "smb1": "SuperMarioBros-1-1-v0",
    "lost_levels": "SuperMarioBros2-1-1-v0",
    "smb2_usa": "SuperMarioBros2USA-1-1-v0",
    "smb3": "SuperMarioBros3-1-1-v0",
}


def run_right(env: MarioEnv, steps: int):
    """Hold "right" (action 1 in every action set) and return the last step's outputs."""
    out = None
    for _ in range(steps):
        out = env.step(1)
        if out[2] or out[3]:
            break
    return out


def test_gymnasium_env_checker_passes():
    env = MarioEnv({})
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize(
    ("config", "shape"),
    [
        ({}, (84, 84, 4)),
        ({"resize": [64, 72], "frame_stack": 2}, (64, 72, 2)),
        ({"grayscale": False, "frame_stack": 3, "resize": 42}, (42, 42, 9)),
    ],
)
def test_observation_is_uint8_with_configured_shape(config, shape):
    env = MarioEnv(config)
    obs, _ = env.reset(seed=SEED)
    assert obs.shape == shape and obs.dtype == np.uint8
    obs, *_ = env.step(1)
    assert obs.shape == shape and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    env.close()


def test_seeded_resets_are_identical():
    a, b = (
        MarioEnv({"tasks": [[1, 1], [1, 2], [1, 3]]}),
        MarioEnv({"tasks": [[1, 1], [1, 2], [1, 3]]}),
    )
    for seed in (1, 2, 3):
        obs_a, info_a = a.reset(seed=seed)
        obs_b, info_b = b.reset(seed=seed)
        assert np.array_equal(obs_a, obs_b) and info_a == info_b
        for _ in range(20):
            step_a, step_b = a.step(2), b.step(2)
        assert np.array_equal(step_a[0], step_b[0]) and step_a[1:] == step_b[1:]
    a.close(), b.close()


@pytest.mark.parametrize("action_set", sorted(ACTION_SETS))
def test_action_set_maps_to_its_number_of_actions(action_set):
    env = MarioEnv({"action_set": action_set})
    assert env.action_space.n == len(ACTION_SETS[action_set])
    assert len(env.get_action_meanings()) == env.action_space.n
    env.close()


def test_default_action_set_follows_the_game():
    assert validate_env_config({}).action_set == "simple"
    assert (
        validate_env_config({"game": "smb2_usa", "world": 1, "stage": 1}).action_set == "smb2_usa"
    )
    assert validate_env_config({"task": "SuperMarioBros3-1-1-v0"}).action_set == "smb3"


def test_stacked_frames_are_distinct_copies_not_views_of_the_emulator_screen():
    env = MarioEnv({})
    env.reset(seed=SEED)
    kept = [env.step(1)[0] for _ in range(30)]
    # If any observation aliased the emulator's buffer, all kept ones would be equal now.
    assert len({o.tobytes() for o in kept}) > 20
    last = kept[-1]
    assert not all(np.array_equal(last[..., 0], last[..., i]) for i in range(1, 4))
    env.close()


def test_episode_info_carries_every_fact_the_store_needs():
    env = MarioEnv({})
    _, info = env.reset(seed=SEED)
    assert set(EPISODE_FACTS) <= set(info)
    *_, info = run_right(env, 40)
    assert set(EPISODE_FACTS) <= set(info)
    assert info["x_pos_max"] >= info["x_pos"] > 40
    assert (info["game"], info["task_id"], info["world"], info["stage"]) == (
        "smb1",
        "SuperMarioBros-1-1-v0",
        1,
        1,
    )
    env.close()


def test_max_episode_steps_truncates():
    env = MarioEnv({"max_episode_steps": 5})
    env.reset(seed=SEED)
    flags = [env.step(0)[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]
    env.close()


def test_curriculum_samples_only_listed_stages():
    env = MarioEnv({"tasks": [[1, 2], [2, 1]]})
    seen = collections.Counter(env.reset(seed=s)[1]["task_id"] for s in range(12))
    assert set(seen) == {"SuperMarioBros-1-2-v0", "SuperMarioBros-2-1-v0"}
    env.close()


def test_task_weights_sample_in_proportion():
    tasks = ["SuperMarioBros-1-1-v0", "SuperMarioBros-1-2-v0"]
    env = MarioEnv({"tasks": tasks, "task_weights": [3, 1]})
    env.reset(seed=SEED)
    seen = collections.Counter(env.reset()[1]["task_id"] for _ in range(200))
    assert set(seen) == set(tasks)
    assert 0.65 < seen[tasks[0]] / 200 < 0.85
    env.close()


def _returns(config: dict, steps: int = 60) -> tuple[float, dict]:
    env = MarioEnv(config)
    env.reset(seed=SEED)
    total, info = 0.0, {}
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(1)
        total += reward
        if terminated or truncated:
            break
    env.close()
    return total, info


def test_progress_weight_scales_the_forward_progress_bonus():
    base, info = _returns({})
    doubled, _ = _returns({"reward_weights": {"progress": 2.0, "time": 0.0}})
    no_time, _ = _returns({"reward_weights": {"time": 0.0}})
    assert info["x_pos"] > 100 and base > 0
    assert doubled == pytest.approx(2 * no_time, rel=0.05)


def test_idle_penalty_charges_steps_without_progress():
    def noop_rewards(config):
        env = MarioEnv({"reward_weights": {"time": 0.0}, **config})
        env.reset(seed=SEED)
        rewards = [env.step(0)[1] for _ in range(20)]  # NOOP: Mario stands still
        env.close()
        return rewards

    assert noop_rewards({}) == [0.0] * 20
    assert noop_rewards({"idle_penalty": 0.5}) == [-0.5] * 20


def test_death_weight_sets_the_life_loss_penalty():
    def died(config):
        env = MarioEnv({"max_episode_steps": None, **config})
        env.reset(seed=SEED)
        total = 0.0
        for _ in range(2000):  # walk right into the first Goomba
            _, reward, terminated, _, info = env.step(1)
            total += reward
            if terminated:
                break
        env.close()
        return info["death"], total

    dead, base = died({"reward_weights": {"time": 0.0, "progress": 0.0}})
    _, harsh = died({"reward_weights": {"time": 0.0, "progress": 0.0, "death": 0.2}})
    # The env's -25 is clipped to its per-frame bound of -15; a weight applies before the clip.
    assert dead and base == -15.0 and harsh == pytest.approx(-25 * 0.2)


def test_the_flag_bonus_is_paid_only_at_the_flag():
    """An episode that ends in a death earns exactly the same with a flag bonus (the bonus is
    added on the step that ends an episode at the flag; the learning benchmark's flag runs pay
    it). Reaching the flag in a test would take a trained policy."""

    def walk(config):
        env = MarioEnv({"max_episode_steps": None, **config})
        env.reset(seed=SEED)
        rewards, terminated, info = [], False, {}
        while not terminated and len(rewards) < 2000:
            _, reward, terminated, _, info = env.step(1)
            rewards.append(reward)
        env.close()
        return rewards, info

    plain, info = walk({})
    with_bonus, _ = walk({"flag_bonus": 50.0})
    assert info["death"] and not info["flag_get"]
    assert with_bonus == plain
    assert validate_env_config({"flag_bonus": 50}).flag_bonus == 50.0


def _play_alternating(config: dict, seed: int, steps: int = 120):
    """Ask for right and right+jump in turns; return what was played and each step's clock."""
    env = MarioEnv(config)
    _, info = env.reset(seed=seed)
    clocks, repeated = [info["time_left"]], 0
    for i in range(steps):
        asked = 1 + i % 2
        _, _, terminated, truncated, info = env.step(asked)
        repeated += env._previous != asked
        clocks.append(info["time_left"])
        if terminated or truncated:
            break
    env.close()
    return repeated / (i + 1), clocks


def test_sticky_actions_repeat_the_previous_action_at_their_rate_and_replay_by_seed():
    rate, clocks = _play_alternating({"sticky_actions": 0.25}, SEED)
    # Every asked action differs from the previous one here, so a repeat shows as a mismatch.
    assert 0.15 < rate < 0.35
    assert _play_alternating({"sticky_actions": 0.25}, SEED) == (rate, clocks)
    assert _play_alternating({}, SEED)[0] == 0


def test_no_op_starts_spend_a_seeded_random_part_of_the_clock_before_the_agent_acts():
    starts = {_play_alternating({"noop_max": 30}, seed, steps=1)[1][0] for seed in range(8)}
    assert len(starts) > 2 and max(starts) <= 400
    assert _play_alternating({}, 0, steps=1)[1][0] == 400
    assert _play_alternating({"noop_max": 30}, 3) == _play_alternating({"noop_max": 30}, 3)


def test_reward_scale_multiplies_the_reward():
    base, _ = _returns({})
    scaled, _ = _returns({"reward_scale": 0.1})
    assert scaled == pytest.approx(base * 0.1)


@pytest.mark.parametrize(
    ("game", "task"),
    [
        *sorted(GAME_TASKS.items()),
        # A lettered world: gym-super-mario-bros plays ~19 s of frames to reach it on the first
        # reset (later resets restore its snapshot), so it stays out of the inner loop.
        pytest.param("lost_levels", "SuperMarioBros2-A-1-v0", marks=pytest.mark.slow),
    ],
)
def test_every_game_steps_through_the_registered_creator(game, task):
    env = mario_env_creator({"task": task})
    obs, _ = env.reset(seed=SEED)
    obs, _, _, _, info = run_right(env, 12)
    assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8
    frames = [obs[..., i] for i in range(4)]
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])
    assert info["game"] == game and info["task_id"] == task
    env.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"colour": True}, "unknown key 'colour'"),
        ({"world": 9}, "world=9 does not exist in smb1"),
        ({"stage": 0}, "stage=0 does not exist in smb1 world 1"),
        ({"action_set": "jumpy"}, "env_config['action_set']='jumpy' is invalid"),
        ({"frame_skip": 0}, "env_config['frame_skip']=0 is invalid; allowed: an integer >= 1"),
        ({"resize": -84}, "env_config['resize']=-84 is invalid"),
        ({"resize": [84, -1]}, "env_config['resize']=[84, -1] is invalid"),
        ({"task": "SuperMarioBros-9-9-v0"}, "task='SuperMarioBros-9-9-v0' is not a registered"),
        ({"game": "zelda"}, "env_config['game']='zelda' is invalid; allowed: smb1, lost_levels"),
        ({"game": "lost_levels", "world": "E"}, "world='E' does not exist in lost_levels"),
        ({"game": "smb2_usa", "world": 1, "stage": 9}, "stage=9 does not exist in smb2_usa"),
        ({"tasks": [[1, 1]], "task_weights": [1, 2]}, "task_weights"),
        ({"task": "SuperMarioBros-1-1-v0", "world": 2}, "exactly one of 'task', 'tasks'"),
        (
            {"tasks": ["SuperMarioBros-1-1-v0", "SuperMarioBros3-1-1-v0"]},
            "mixes games whose default action sets differ",
        ),
        ({"reward_weights": {"speed": 1}}, "reward_weights.speed"),
        ({"idle_penalty": -1}, "idle_penalty"),
        ({"flag_bonus": -5}, "env_config['flag_bonus']=-5 is invalid; allowed: a finite number"),
        ({"sticky_actions": 1}, "env_config['sticky_actions']=1 is invalid; allowed: a number in"),
        ({"sticky_actions": "0.25"}, "env_config['sticky_actions']='0.25' is invalid"),
        ({"noop_max": 401}, "env_config['noop_max']=401 is invalid; allowed: an integer >= 0 and"),
        ({"noop_max": 2.5}, "env_config['noop_max']=2.5 is invalid"),
    ],
)
def test_bad_env_config_fails_with_one_clear_line(config, message):
    with pytest.raises(EnvConfigError) as err:
        validate_env_config(config)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            json.loads('{"idle_penalty": NaN}'),
            "env_config['idle_penalty']=nan is invalid; allowed: a finite number >= 0.0",
        ),
        (
            json.loads('{"reward_scale": Infinity}'),
            "env_config['reward_scale']=inf is invalid; allowed: a finite number >= 0.0",
        ),
        (
            json.loads('{"reward_weights": {"death": -Infinity}}'),
            "env_config['reward_weights.death']=-inf is invalid; allowed: a finite number",
        ),
        (
            json.loads('{"reward_weights": {"time": NaN}}'),
            "env_config['reward_weights.time']=nan is invalid; allowed: a finite number",
        ),
        (
            json.loads('{"tasks": [[1, 1], [1, 2]], "task_weights": [1, NaN]}'),
            "env_config['task_weights']=[1, nan] is invalid; allowed: a list of 2 finite",
        ),
        (
            json.loads('{"tasks": [[1, 1], [1, 2]], "task_weights": [Infinity, 1]}'),
            "env_config['task_weights']=[inf, 1] is invalid; allowed: a list of 2 finite",
        ),
        (
            {"tasks": [[1, 1], [1, 2]], "task_weights": [1e308, 1e308]},
            "with a positive finite sum",
        ),
    ],
)
def test_nan_and_infinity_are_rejected_wherever_a_number_is_accepted(config, message):
    with pytest.raises(EnvConfigError) as err:
        validate_env_config(config)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"resize": 100000},
            "env_config['resize']=100000 is invalid; allowed: an integer in [1, 1024], "
            "a [height, width] pair of them, or None",
        ),
        ({"resize": [84, 1025]}, "env_config['resize']=[84, 1025] is invalid"),
        (
            {"frame_stack": 65},
            "env_config['frame_stack']=65 is invalid; allowed: an integer >= 1 and <= 64",
        ),
        (
            {"frame_skip": 65},
            "env_config['frame_skip']=65 is invalid; allowed: an integer >= 1 and <= 64",
        ),
        (
            {"max_episode_steps": 10**19},
            "env_config['max_episode_steps']=10000000000000000000 is invalid; "
            "allowed: an integer >= 1 and <= 10000000 or None",
        ),
    ],
)
def test_integers_too_large_to_be_meant_are_rejected(config, message):
    with pytest.raises(EnvConfigError) as err:
        validate_env_config(config)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_largest_allowed_integers_are_accepted():
    config = validate_env_config(
        {"resize": [1024, 1024], "frame_stack": 64, "frame_skip": 64, "max_episode_steps": 10**7}
    )
    assert config.observation_shape == (1024, 1024, 64) and config.max_episode_steps == 10**7


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"stage": [1]}, "env_config['stage']=[1] is invalid; allowed: an integer"),
        ({"stage": 1.0}, "env_config['stage']=1.0 is invalid; allowed: an integer"),
        (
            {"world": {"a": 1}},
            "env_config['world']={'a': 1} is invalid; allowed: an integer, or a label string "
            "(lost_levels: 'A'-'D')",
        ),
        (
            {"game": ["smb1"]},
            "env_config['game']=['smb1'] is invalid; allowed: smb1, lost_levels, smb2_usa, smb3",
        ),
        (
            {"action_set": ["simple"]},
            "env_config['action_set']=['simple'] is invalid; allowed: ",
        ),
        (
            {"tasks": [[1, [1]]]},
            "env_config['tasks']=[1, [1]] is invalid; allowed: a task id string or a "
            "[world, stage] pair",
        ),
    ],
)
def test_a_list_or_dict_where_a_scalar_is_expected_fails_with_one_line(config, message):
    with pytest.raises(EnvConfigError) as err:
        validate_env_config(config)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "config",
    [
        {"task_weights": [1]},
        {"task": "SuperMarioBros-1-1-v0", "task_weights": [1]},
        {"world": 1, "stage": 2, "task_weights": [1]},
    ],
)
def test_task_weights_without_tasks_fails_instead_of_being_ignored(config):
    with pytest.raises(EnvConfigError) as err:
        validate_env_config(config)
    assert str(err.value) == (
        "env_config['task_weights']=[1] is invalid; allowed: only together with env_config['tasks']"
    )


def test_lost_levels_worlds_accept_labels_and_rom_numbers():
    by_label = validate_env_config({"game": "lost_levels", "world": "B", "stage": 2})
    by_number = validate_env_config({"game": "lost_levels", "world": 11, "stage": 2})
    assert by_label.tasks == by_number.tasks == ("SuperMarioBros2-B-2-v0",)


def test_env_is_created_inside_a_ray_worker_from_its_registered_name(ray_session):
    from ray.tune.registry import ENV_CREATOR, _global_registry

    from envs import register_mario_env

    name = register_mario_env()

    @ray_session.remote
    def make_and_step():
        creator = _global_registry.get(ENV_CREATOR, name)
        env = creator({"task": "SuperMarioBros-1-2-v0"})
        obs, info = env.reset(seed=0)
        obs, *_ = env.step(1)
        return obs.shape, info["task_id"]

    assert ray_session.get(make_and_step.remote()) == ((84, 84, 4), "SuperMarioBros-1-2-v0")
