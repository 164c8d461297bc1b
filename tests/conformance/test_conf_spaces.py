"""Action and observation spaces: every algorithm trains on what SB3's A2C/PPO train on."""

import gymnasium as gym
import numpy as np
import pytest
from conftest import all_finite
from gymnasium import spaces
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)

SPACE_CASES = {
    "discrete": ("MlpPolicy", lambda: IdentityEnv(4), {}),
    "box": ("MlpPolicy", lambda: IdentityEnvBox(), {}),
    "box_sde": ("MlpPolicy", lambda: IdentityEnvBox(), dict(use_sde=True)),
    "box_sde_squashed": ("MlpPolicy", lambda: IdentityEnvBox(), dict(use_sde=True, policy_kwargs=dict(squash_output=True))),
    "multidiscrete": ("MlpPolicy", lambda: IdentityEnvMultiDiscrete(2), {}),
    "multibinary": ("MlpPolicy", lambda: IdentityEnvMultiBinary(2), {}),
    "image": ("CnnPolicy", lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), {}),
    "dict": ("MultiInputPolicy", lambda: SimpleMultiObsEnv(random_start=False), {}),
}


@pytest.mark.parametrize("case", list(SPACE_CASES))
def test_trains_and_predicts_on_space(algo, case):
    policy, make_env, kwargs = SPACE_CASES[case]
    env = make_env()
    model = algo.make(policy, env, **kwargs)
    model.learn(2 * model.n_steps)
    assert model._n_updates >= 1
    assert all_finite(model)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(np.asarray(action).astype(env.action_space.dtype).reshape(env.action_space.shape))


class TupleActionEnv(gym.Env):
    observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3)))

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, False, False, {}


def test_unsupported_action_space_is_a_clear_error(algo):
    with pytest.raises(ValueError, match="action_space"):
        algo.make("MlpPolicy", TupleActionEnv())


def test_unsupported_action_space_of_an_env_id_is_a_clear_error(algo):
    """An env id is made by SB3 inside the constructor, whose own check is an assert."""
    gym.register("TupleActionEnv-v0", entry_point=TupleActionEnv)
    try:
        with pytest.raises(ValueError, match=r"action_space=Tuple\(Discrete\(2\), Discrete\(3\)\) is not supported"):
            algo.make("MlpPolicy", "TupleActionEnv-v0")
    finally:
        gym.registry.pop("TupleActionEnv-v0")


def test_unsupported_observation_space_is_a_clear_error(algo):
    env = TupleActionEnv()
    env.observation_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2)))
    env.action_space = spaces.Discrete(2)
    with pytest.raises((ValueError, NotImplementedError), match="(?i)observation space|Tuple"):
        algo.make("MlpPolicy", env)


def test_sde_on_discrete_actions_is_a_clear_error(algo):
    with pytest.raises(ValueError, match="(?i)sde"):
        algo.make("MlpPolicy", IdentityEnv(3), use_sde=True)


def test_squash_without_sde_is_a_clear_error(algo):
    with pytest.raises(ValueError, match="squash_output"):
        algo.make("MlpPolicy", IdentityEnvBox(), policy_kwargs=dict(squash_output=True))


def test_sde_sample_freq_resamples_noise(algo):
    model = algo.make("MlpPolicy", gym.make("Pendulum-v1"), use_sde=True, sde_sample_freq=4)
    model.learn(2 * model.n_steps)
    assert all_finite(model)
