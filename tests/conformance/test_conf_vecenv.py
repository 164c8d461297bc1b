"""Vectorised environments and wrappers."""

import gymnasium as gym
import pytest
from conftest import all_finite
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecNormalize


@pytest.mark.parametrize("n_envs", [1, 3, 8])
def test_dummy_vec_env(algo, n_envs):
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0, vec_env_cls=DummyVecEnv)
    model = algo.make("MlpPolicy", env, n_steps=8)
    model.learn(2 * 8 * n_envs)
    assert model.num_timesteps == 2 * 8 * n_envs
    assert model._n_updates >= 2
    assert all_finite(model)


@pytest.mark.slow
def test_subproc_vec_env(algo):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv, vec_env_kwargs=dict(start_method="fork"))
    try:
        model = algo.make("MlpPolicy", env, n_steps=8)
        model.learn(2 * 8 * 2)
        assert all_finite(model)
    finally:
        env.close()


def test_vec_normalize(algo, tmp_path):
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0), gamma=0.9)
    model = algo.make("MlpPolicy", env, n_steps=8, gamma=0.9)
    model.learn(2 * 8 * 2)
    assert all_finite(model)
    assert env.obs_rms.count > 1  # the statistics were updated through the algorithm's rollouts


def test_vec_frame_stack(algo):
    env = VecFrameStack(make_vec_env("CartPole-v1", n_envs=2, seed=0), n_stack=3)
    model = algo.make("MlpPolicy", env, n_steps=8)
    assert model.observation_space.shape == (12,)
    model.learn(2 * 8 * 2)
    assert all_finite(model)


def test_time_limit_truncation(algo):
    """Episodes cut by a TimeLimit (truncated=True) inside rollouts and at their borders."""

    def make():
        return gym.wrappers.TimeLimit(gym.make("Pendulum-v1").unwrapped, max_episode_steps=5)

    env = make_vec_env(make, n_envs=2, seed=0)
    model = algo.make("MlpPolicy", env, n_steps=8)
    model.learn(3 * 8 * 2)
    assert len(model.ep_info_buffer) >= 4  # several truncated episodes were seen
    assert all(info["l"] == 5 for info in model.ep_info_buffer)
    assert all_finite(model)
