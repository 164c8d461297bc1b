"""One unit for ``train/n_updates`` in every algorithm: policy updates, one per ``train()`` (per rollout).

Gradient steps are a different count (``train/sgd_steps``, per update); a logging helper never
moves the counter; a non-finite error names the update in progress, also in the middle of one.
"""

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

from sb3_pgx import NonFiniteError, VTraceA2C

N_ENVS = 2


def make(algo, **overrides):
    """``algo`` with several gradient steps per update (VTraceA2C: 2 epochs x 2 env minibatches)."""
    if algo.cls is VTraceA2C:
        overrides = {"n_env_minibatches": 2, **overrides}
    model = algo.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=0), **overrides)
    model.set_logger(configure(None, []))
    return model


def test_counts_one_per_rollout_whatever_the_gradient_steps(algo):
    model = make(algo)
    model.learn(3 * model.n_steps * N_ENVS)
    assert model._n_updates == 3
    assert model.logger.name_to_value["train/n_updates"] == 3
    # Every algorithm of the suite takes more than one gradient step per update here.
    assert model.logger.name_to_value["train/sgd_steps"] > 1


def test_logging_helpers_leave_the_counter_alone(algo):
    model = make(algo)
    model.learn(model.n_steps * N_ENVS)
    model.record_common()
    model.record_common()
    assert model._n_updates == 1
    assert model.logger.name_to_value["train/n_updates"] == 1


def test_non_finite_error_names_the_update_in_progress(algo, monkeypatch):
    """A NaN at the second gradient step of update 3 is reported as update 3, gradient step 2."""
    model = make(algo)
    batch = model.n_steps * N_ENVS
    model.learn(2 * batch)
    steps = {"n": 0}
    original = model.optimizer_step

    def poisoned_step(loss, *args, **kwargs):
        steps["n"] += 1
        return original(loss * float("nan") if steps["n"] == 2 else loss, *args, **kwargs)

    monkeypatch.setattr(model, "optimizer_step", poisoned_step)
    with pytest.raises(NonFiniteError, match=r"not finite at update 3, gradient step (\d+) ") as error:
        model.learn(batch, reset_num_timesteps=False)
    # NaturalPG's natural step is no optimiser step: its second optimiser step is the update's third.
    expected = 3 if algo.name == "NaturalPG" else 2
    assert f"gradient step {expected} " in str(error.value)
    assert model._n_updates == 2
