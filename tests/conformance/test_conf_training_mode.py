"""One training-mode rule: snapshots, bootstraps and targets in eval mode, gradient passes in training mode.

A features extractor with BatchNorm and Dropout makes the two modes two different policies: a
snapshot or a bootstrap value taken in training mode is not the policy that acted (SB3 collects
rollouts in eval mode).
"""

import warnings

import numpy as np
import pytest
import torch as th
from conftest import ALGORITHMS, all_finite
from runs import a2c_and_vtrace_weights
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_pgx import NaturalPG, VTraceA2C
from sb3_pgx.a2c_vtrace import a2c_vtrace as a2c_vtrace_module
from sb3_pgx.npg import npg as npg_module


class NormDropExtractor(BaseFeaturesExtractor):
    """Linear -> BatchNorm -> ReLU -> Dropout(p)."""

    def __init__(self, observation_space, features_dim: int = 16, p: float = 0.5):
        super().__init__(observation_space, features_dim)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(get_flattened_obs_dim(observation_space), features_dim),
            nn.BatchNorm1d(features_dim),
            nn.ReLU(),
            nn.Dropout(p),
        )

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations)


def norm_drop(p: float) -> dict:
    return dict(features_extractor_class=NormDropExtractor, features_extractor_kwargs=dict(p=p))


def test_trains_with_batch_norm_and_dropout_on_one_env(algo):
    """BatchNorm in training mode cannot take one row: the bootstrap of a single env must be eval mode."""
    model = algo.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), policy_kwargs=norm_drop(0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # NaturalPG: no degenerate (skipped) step either
        model.learn(300)
    assert model._n_updates >= 300 // model.n_steps
    assert all_finite(model)
    assert model.logger.name_to_value["trust_region/ess"] > 0.0


# VTraceA2C takes no snapshot (it keeps the recorded log-probabilities): see test_vtrace_inputs_are_eval_mode.
@pytest.mark.parametrize("algo", [spec for spec in ALGORITHMS if spec.cls is not VTraceA2C], ids=lambda spec: spec.name)
def test_behaviour_snapshot_is_the_policy_that_acted(algo):
    """With Dropout p=0.9 a training-mode snapshot would differ from the recorded log-probabilities."""
    model = algo.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), policy_kwargs=norm_drop(0.9))
    snapshots = []
    behaviour_batch = model.behaviour_batch

    def spy(*args, **kwargs):
        snapshots.append(behaviour_batch(*args, **kwargs))
        return snapshots[-1]

    model.behaviour_batch = spy
    model.learn(2 * model.n_steps * 2)
    assert len(snapshots) == 2
    for batch in snapshots:
        log_prob = batch.old_distribution.log_prob(batch.actions)
        th.testing.assert_close(log_prob, batch.old_log_prob, rtol=1e-5, atol=1e-5)
    assert model.policy.training  # train() leaves the policy in training mode, as SB3's algorithms do


@pytest.mark.parametrize("sub_sampling_factor", [1, 2])
def test_natural_pg_fisher_kl_is_zero_at_the_old_policy(monkeypatch, sub_sampling_factor):
    """The Fisher's KL is 0 at theta_old (its minimum), as a Fisher needs: pi_old is the gradient's
    own training-mode pass, detached, not a second pass with other Dropout masks."""
    kls = []
    kl_gradient = npg_module.kl_gradient

    def spy(mean_kl, params):
        kls.append(mean_kl.item())
        return kl_gradient(mean_kl, params)

    monkeypatch.setattr(npg_module, "kl_gradient", spy)
    spec = next(spec for spec in ALGORITHMS if spec.cls is NaturalPG)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = spec.make("MlpPolicy", env, sub_sampling_factor=sub_sampling_factor, policy_kwargs=norm_drop(0.9))
    model.learn(2 * model.n_steps * 2)
    assert len(kls) == 2
    assert max(abs(kl) for kl in kls) < 1e-6


def test_vtrace_inputs_are_eval_mode(monkeypatch):
    """On-policy (first step of the first rollout) the targets are V-trace's with weights exactly 1,
    the values the rollout recorded and the eval-mode bootstrap value, although Dropout p=0.9 makes
    every training-mode pass another policy; the next step's inputs come from an eval-mode pass."""
    targets, calls = [], []
    vtrace = a2c_vtrace_module.vtrace

    def spy(**kwargs):
        calls.append(kwargs)
        return vtrace(**kwargs)

    monkeypatch.setattr(a2c_vtrace_module, "vtrace", spy)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = VTraceA2C("MlpPolicy", env, n_steps=8, n_epochs=2, policy_kwargs=norm_drop(0.9), seed=0)
    update = model._update

    def spy_update(batch, mode_dependent, recorded, parameters):
        targets.append((batch, recorded))
        return update(batch, mode_dependent, recorded, parameters)

    model._update = spy_update
    inputs = []
    vtrace_inputs = model.vtrace_inputs

    def spy_inputs(batch):
        """The targets' inputs, and the eval-mode values of the same networks, taken independently."""
        log_rhos, values, bootstrap = vtrace_inputs(batch)
        model.policy.set_training_mode(False)
        with th.no_grad():
            reference = model.policy.predict_values(batch.flat_observations()).view(values.shape)
        model.policy.set_training_mode(True)
        inputs.append((values, reference))
        return log_rhos, values, bootstrap

    model.vtrace_inputs = spy_inputs
    bootstrap_values, eval_values = [], []
    collect_rollouts = model.collect_rollouts

    def collect_and_evaluate(*args, **kwargs):
        """The eval-mode values of the rollout and of the observation after its last step."""
        complete = collect_rollouts(*args, **kwargs)
        model.policy.set_training_mode(False)
        with th.no_grad():
            observations = th.as_tensor(model.rollout_buffer.observations).reshape(-1, 4)
            eval_values.append(model.policy.predict_values(observations).view(8, 2))
            bootstrap_values.append(model.policy.predict_values(th.as_tensor(model._last_obs)).flatten())
        return complete

    model.collect_rollouts = collect_and_evaluate
    model.learn(8 * 2)
    assert model.mode_dependent
    first_batch, recorded = targets[0]
    assert recorded is not None and targets[1][1] is None  # the buffer's targets for the first step only
    expected = vtrace(
        log_rhos=th.zeros(8, 2),
        discounts=first_batch.discounts,
        rewards=first_batch.rewards,
        values=eval_values[0],
        bootstrap_value=bootstrap_values[0],
    )
    np.testing.assert_allclose(recorded.vs.numpy(), expected.vs.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(recorded.pg_advantages.numpy(), expected.pg_advantages.numpy(), rtol=1e-5, atol=1e-5)
    # The second epoch sees the updated policy: the weights move off 1, and the inputs are eval-mode ones.
    assert len(calls) == 1 and calls[0]["log_rhos"].abs().max().item() > 1e-6
    assert len(inputs) == 1
    th.testing.assert_close(inputs[0][0], inputs[0][1])
    th.testing.assert_close(calls[0]["values"], inputs[0][0])


def test_a2c_vtrace_single_epoch_is_a2c_with_batch_norm():
    """Targets in eval mode, as A2C's are (collection time): with BatchNorm the update is still A2C's."""
    kwargs = dict(n_steps=8, gamma=0.97, gae_lambda=0.9, ent_coef=0.01, seed=3, policy_kwargs=norm_drop(0.0))
    a2c, vt = a2c_and_vtrace_weights(2, 2 * 8 * 4, **kwargs)
    # atol 1e-4: RMSprop divides by the root of tiny second moments, which magnifies float32 rounding
    # differences of near-zero gradients between CPUs (1.3e-5 seen); a wrong update moves parameters by
    # about the learning rate, 7e-4, per step.
    for key in a2c:
        th.testing.assert_close(vt[key], a2c[key], rtol=1e-4, atol=1e-4)


def test_mode_dependence_is_found_again_for_another_policy(algo):
    """mode_dependent is kept per policy object: a policy put in place of the first one is examined anew,
    so the eval-mode passes are not skipped for a policy with Dropout and BatchNorm."""
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    model = algo.make("MlpPolicy", env)
    assert not model.mode_dependent
    model.policy = algo.make("MlpPolicy", env, policy_kwargs=norm_drop(0.5)).policy
    assert model.mode_dependent
    model.learn(2 * model.n_steps)  # trains with it: BatchNorm never gets a training-mode batch of one row
    assert all_finite(model)
