"""Scenarios as gymnasium environments."""
from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import zplan
from conftest import SCENARIOS, scenario_files


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.name)
def test_check_env_on_every_scenario(path):
    env = zplan.make(path, seed=50_000)
    check_env(env, skip_render_check=False)
    # The spaces come from the scenario's typed observation spec and action bounds.
    obs, info = env.reset(seed=50_001)
    assert set(obs) == set(env.observation_space.spaces)
    for name, value in obs.items():
        space = env.observation_space[name]
        assert value.shape == space.shape and value.dtype == space.dtype, name
    goal = env.goal_observation()
    assert env.observation_space.contains(goal)
    assert isinstance(info["distance"], float)


def test_spaces_match_the_spec():
    env = zplan.make(SCENARIOS / "push_pixels.ron")
    image = env.observation_space["image"]
    assert image.dtype == np.uint8 and image.shape[0] % 3 == 0 and image.shape[1:] == (64, 64)
    assert np.all(image.low == 0) and np.all(image.high == 255)
    assert env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, env.core.action_low)
    np.testing.assert_array_equal(env.action_space.high, env.core.action_high)


def test_reset_is_deterministic_and_seeds_differ():
    env = zplan.make(SCENARIOS / "two_rooms.ron")
    a, _ = env.reset(seed=50_123)
    b, _ = env.reset(seed=50_123)
    c, _ = env.reset(seed=50_124)
    np.testing.assert_array_equal(a["state"], b["state"])
    assert not np.array_equal(a["state"], c["state"])


def test_step_render_and_goal():
    env = zplan.make(SCENARIOS / "reach.ron", render_size=(96, 64))
    env.reset(seed=50_000)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert reward == pytest.approx(-info["distance"])
    assert not truncated
    frame = env.render()
    assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
    # float64 actions are converted; out-of-bounds entries are clipped and counted.
    _, _, _, _, info = env.step(np.full(env.action_space.shape, 10.0))
    assert info["clipped"] == env.action_space.shape[0]


def test_truncates_at_the_step_limit():
    env = zplan.make(SCENARIOS / "reach.ron", max_episode_steps=3)
    env.reset(seed=50_000)
    zero = np.zeros(env.action_space.shape, np.float32)
    flags = [env.step(zero)[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_bad_actions_raise_value_error():
    env = zplan.make(SCENARIOS / "reach.ron")
    env.reset(seed=50_000)
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0, 0.0], np.float32))
    with pytest.raises(ValueError, match="float"):
        env.step(np.array(["a", "b", "c"]))


def test_step_before_reset_and_bad_files():
    import gymnasium as gym

    env = zplan.make(SCENARIOS / "reach.ron")
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())
    with pytest.raises(zplan.ZplanError, match="no_such_file.ron"):
        zplan.make(SCENARIOS / "no_such_file.ron")
    with pytest.raises(zplan.ZplanError, match="default.ron"):
        zplan.make(SCENARIOS / "default.ron")
