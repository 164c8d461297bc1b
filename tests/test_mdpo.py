"""MDPO: the t_k schedule, the KL direction, the step count, the schedule as training state, learning."""


import pytest
import torch as th
from probes import RecordsFirstPenalty
from runs import evaluation_return, zoo_model
from stable_baselines3.common.env_util import make_vec_env

from sb3_pgx import MDPO
from sb3_pgx.mdpo import mdpo_step_size


@pytest.mark.parametrize("n_epochs", [0, 2.5])
def test_bad_n_epochs_is_a_value_error(n_epochs):
    """n_epochs (None or a count) is MDPO's alone; the conformance suite checks the ranges the registry gives."""
    with pytest.raises(ValueError, match="n_epochs"):
        MDPO("MlpPolicy", "CartPole-v1", n_epochs=n_epochs)


def test_n_epochs_and_n_sgd_steps_together_is_a_value_error_naming_both():
    with pytest.raises(ValueError, match=r"n_sgd_steps=20 and n_epochs=10 is not allowed"):
        MDPO("MlpPolicy", "CartPole-v1", n_sgd_steps=20, n_epochs=10)


@pytest.mark.parametrize(("batch_size", "n_epochs", "expected_steps"), [(8, 3, 12), (12, 2, 6), (None, 2, 2), (32, 1, 1)])
def test_n_epochs_are_ppo_passes_of_minibatches(batch_size, n_epochs, expected_steps):
    """PPO's arguments: n_epochs passes over the 32-sample batch, ceil(32 / batch_size) steps each."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = MDPO("MlpPolicy", env, n_steps=16, batch_size=batch_size, n_epochs=n_epochs)
    assert model.n_sgd_steps is None
    model.learn(32)
    assert model.logger.name_to_value["train/sgd_steps"] == expected_steps
    assert model.logger.name_to_value["train/epochs"] == n_epochs


def test_default_is_320_steps():
    model = MDPO("MlpPolicy", "CartPole-v1")
    assert (model.n_sgd_steps, model.max_sgd_steps) == (320, 320)


def test_n_epochs_saved_and_loaded(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = MDPO("MlpPolicy", env, n_steps=16, batch_size=8, n_epochs=3, seed=0)
    model.learn(32)
    model.save(tmp_path / "model")
    loaded = MDPO.load(tmp_path / "model", env=env)
    assert (loaded.n_epochs, loaded.n_sgd_steps, loaded.max_sgd_steps) == (3, None, None)
    loaded.learn(32)
    assert loaded.logger.name_to_value["train/sgd_steps"] == 12


def test_step_size_at_start_middle_and_end():
    assert mdpo_step_size(0, 100, 0.05) == 1.0  # start
    assert mdpo_step_size(50, 100, 0.05) == pytest.approx(0.5)  # middle
    assert mdpo_step_size(99, 100, 0.05) == pytest.approx(0.05)  # end: 0.01 floored
    assert mdpo_step_size(90, 100, 0.05) == pytest.approx(0.1)
    assert mdpo_step_size(150, 100, 0.05) == 0.05  # past the plan: the floor


class _Probe(RecordsFirstPenalty, MDPO):
    """Records t_k per iteration; in the first iteration moves the policy and records the penalty."""

    def begin_update(self):
        super().begin_update()
        self.step_sizes = [*getattr(self, "step_sizes", []), self._step_size]

    def penalty_coefficient(self):
        return self._step_size


def _summed(kl):
    return (kl.sum(-1) if kl.ndim > 1 else kl).mean().item()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_penalty_is_kl_new_old_over_step_size(env_id):
    model = _Probe("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), n_steps=32, n_sgd_steps=2, seed=0)
    model.learn(64 * 4)
    value, step_size, old, new = model.record  # last iteration: t = 1 - 3/4
    assert step_size == pytest.approx(0.25)
    new_old = _summed(th.distributions.kl_divergence(new, old))
    old_new = _summed(th.distributions.kl_divergence(old, new))
    assert value == pytest.approx(new_old / 0.25, rel=1e-4)
    assert abs(new_old - old_new) > 1e-3 * new_old  # the direction is observable


@pytest.mark.parametrize(("batch_size", "n_sgd_steps"), [(None, 3), (8, 6), (8, 1)])
def test_number_of_sgd_steps(batch_size, n_sgd_steps):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = MDPO("MlpPolicy", env, n_steps=16, batch_size=batch_size, n_sgd_steps=n_sgd_steps)
    model.learn(32)
    assert model.logger.name_to_value["train/sgd_steps"] == n_sgd_steps


def test_schedule_is_saved_loaded_and_continued(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = _Probe("MlpPolicy", env, n_steps=16, batch_size=None, n_sgd_steps=1, seed=0)
    model.learn(32 * 4)  # K = 4 iterations
    assert model.step_sizes == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert model._mdpo_iteration == 4
    assert model.logger.name_to_value["train/step_size"] == pytest.approx(0.25)
    model.save(tmp_path / "model")

    loaded = _Probe.load(tmp_path / "model", env=env)
    assert loaded._mdpo_iteration == 4
    loaded.step_sizes = []
    loaded.learn(32 * 4, reset_num_timesteps=False)  # k continues at 4, K = 8 in all
    assert loaded.step_sizes == pytest.approx([0.5, 0.375, 0.25, 0.125])
    assert loaded._mdpo_iteration == 8

    loaded.step_sizes = []
    loaded.learn(32 * 2)  # a fresh run: the schedule starts again
    assert loaded.step_sizes == pytest.approx([1.0, 0.5])


@pytest.mark.slow
def test_mdpo_solves_cartpole():
    """rl-zoo3's run of hyperparams/mdpo.yml on CartPole-v1: solved (475) at the end of its 100k steps."""
    model, budget = zoo_model("mdpo")
    model.learn(budget)
    assert evaluation_return(model) >= 475
