"""Same seed, same device, one thread: identical parameters after training twice."""

import pytest
from conftest import params_equal
from stable_baselines3.common.env_util import make_vec_env


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_same_seed_same_parameters(algo, env_id):
    models = []
    for _ in range(2):
        model = algo.make("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=3), seed=3)
        model.learn(3 * model.n_steps * 2)
        models.append(model)
    assert params_equal(*models)


def test_other_seed_other_parameters(algo):
    models = [algo.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=s), seed=s) for s in (0, 1)]
    for model in models:
        model.learn(model.n_steps * 2)
    assert not params_equal(*models)
