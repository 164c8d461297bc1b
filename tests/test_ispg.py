"""ImportanceSampledPG: argument checks, weights inside the algorithm, truncation, early stop, learning."""

import math

import numpy as np
import pytest
import torch as th
from probes import MovedPolicy
from runs import evaluation_return, zoo_model
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from test_surrogate import naive_per_decision

from sb3_pgx import ImportanceSampledPG


@pytest.mark.parametrize(
    "kwargs",
    [
        {"importance_weights": "per_episode"},
        {"min_ess": 0.0},
        {"min_ess": 1.5},
        {"min_ess": -0.1},
        {"max_weight": 0.0},
        {"n_epochs": 0},
        {"batch_size": 0},
        {"clip_range_vf": -1.0},
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        ImportanceSampledPG("MlpPolicy", "CartPole-v1", **kwargs)


class _Probe(MovedPolicy, ImportanceSampledPG):
    """Moves the policy away from the behaviour policy before the epochs, and records the first step."""

    def log_weights(self, samples, log_prob, indices):
        log_w = super().log_weights(samples, log_prob, indices)
        if self.record is None:
            batch = self._ordered_batch
            with th.no_grad():
                _, all_log_prob, _ = self.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
            self.record = {
                "log_w": log_w.detach().numpy().copy(),
                "indices": indices.cpu().numpy().copy(),
                "per_step": (all_log_prob - batch.old_log_prob).numpy().copy(),
                "episode_starts": self.rollout_buffer.episode_starts.copy(),
            }
        return log_w


@pytest.mark.parametrize("weighting", ["per_step", "per_decision"])
def test_weights_inside_the_algorithm_match_a_naive_reference(weighting):
    n_envs, n_steps = 2, 64
    model = _Probe(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=n_envs, seed=0),
        n_steps=n_steps,
        batch_size=32,
        n_epochs=1,
        importance_weights=weighting,
        seed=0,
    )
    model.learn(n_steps * n_envs)
    record = model.record
    starts = record["episode_starts"]
    assert starts[1:].any(), "the test needs episode boundaries inside the batch"
    # The flattened buffer holds env e, step t at position e * n_steps + t.
    per_step = record["per_step"].reshape(n_envs, n_steps).T
    if weighting == "per_step":
        expected = np.exp(per_step)
    else:
        expected = naive_per_decision(per_step.astype(np.float64), starts.astype(bool))
    env_of, step_of = np.divmod(record["indices"], n_steps)
    np.testing.assert_allclose(np.exp(record["log_w"]), expected[step_of, env_of], rtol=1e-4)
    assert not np.allclose(record["log_w"], 0.0)


def test_truncated_surrogate():
    model = ImportanceSampledPG("MlpPolicy", "CartPole-v1", max_weight=2.0, _init_setup_model=False)
    log_w = th.log(th.tensor([0.5, 1.0, 3.0, 100.0]))
    advantages = th.tensor([1.0, -1.0, 2.0, -0.5])
    expected = (0.5 * 1 - 1 * 1 + 2 * 2 - 2 * 0.5) / 4
    assert model.surrogate(log_w, advantages).item() == pytest.approx(expected)
    # a weight far above the float range is truncated, not overflowed
    assert math.isfinite(model.surrogate(th.tensor([1000.0]), th.tensor([1.0])).item())


@pytest.mark.parametrize(("min_ess", "expected_epochs"), [(None, 4), (1.0, 1)])
def test_min_ess_stops_the_epochs(min_ess, expected_epochs):
    model = ImportanceSampledPG(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        n_steps=64,
        batch_size=16,
        n_epochs=4,
        learning_rate=1e-2,
        min_ess=min_ess,
        seed=0,
    )
    model.learn(128)
    logged = model.logger.name_to_value
    assert logged["train/stopped_epoch"] == expected_epochs
    assert logged["train/epochs"] == expected_epochs
    assert 0.0 < logged["train/epoch_ess"] <= 1.0


def test_logs_diagnostics():
    model = ImportanceSampledPG("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=32, batch_size=16, seed=0)
    model.learn(64)
    logged = model.logger.name_to_value
    # Each figure inside the range its definition allows (a NaN fails every comparison).
    assert 0.0 <= logged["train/clip_fraction"] <= 1.0
    assert logged["train/approx_kl"] >= 0.0  # k3 is never negative
    assert 0.0 < logged["train/epoch_ess"] <= 1.0
    assert 1.0 <= logged["train/epoch_max_ratio"] < 1e3  # the first step's weights are all exactly 1
    assert logged["train/value_loss"] > 0.0
    assert 0.0 < logged["trust_region/ess"] <= 1.0
    assert 0.0 <= logged["trust_region/clip_fraction"] <= 1.0
    assert logged["trust_region/kl"] >= 0.0 and logged["trust_region/approx_kl"] >= 0.0
    assert 0.0 < logged["trust_region/max_ratio"] < 1e3
    # k1 and k3 estimate the same KL(old || new) as the exact figure: all three small after one update.
    assert abs(logged["trust_region/kl_k1"]) < 0.5 and logged["trust_region/kl"] < 0.5


@pytest.mark.slow
def test_ispg_solves_cartpole():
    """hyperparams/ispg.yml's CartPole-v1 run with the ESS early stop at its default: solved (475) at the end
    of the 100k steps. (The yml turns the stop off, as the campaign ran it; one seed of five collapsed
    there, docs/results.md.)"""
    model, budget = zoo_model("ispg", min_ess=0.5)
    model.learn(budget)
    assert evaluation_return(model) >= 475


def test_without_clipping_it_takes_ppos_steps():
    """Per-step weights without truncation or early stop are PPO's surrogate with an unbounded clip range:
    same rollouts, same minibatches (the same draws of the global generator), same steps."""
    settings = dict(n_steps=32, batch_size=16, n_epochs=3, learning_rate=3e-3, seed=0, device="cpu")
    # One after the other: both draw from the global generators, which construction seeds.
    ours = ImportanceSampledPG("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), min_ess=None, **settings)
    ours.learn(128)
    ppo = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), clip_range=1e9, **settings)
    ppo.learn(128)
    for mine, theirs in zip(ours.policy.parameters(), ppo.policy.parameters(), strict=True):
        assert th.allclose(mine, theirs, atol=1e-5), (mine - theirs).abs().max()
