"""The shared core of the importance-sampled family: its pure functions and its loop's guards."""

import numpy as np
import pytest
import torch as th
from envs import DictObsEnv
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
    SquashedDiagGaussianDistribution,
)
from stable_baselines3.common.env_util import make_vec_env

from sb3_pgx import MDPO, AdaptiveKLPPO, ImportanceSampledPG, NonFiniteError
from sb3_pgx.common.base import index_samples, policy_entropy_loss
from sb3_pgx.common.surrogate import (
    index_distribution,
    minibatch_weight_figures,
    per_decision_log_weights,
    value_loss,
)
from sb3_pgx.common.update_stats import exact_kl


def naive_per_decision(log_ratios: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """Reference: for each env, walk through time multiplying ratios, restarting at episode starts."""
    n_steps, n_envs = log_ratios.shape
    weights = np.zeros_like(log_ratios)
    for env in range(n_envs):
        product = 1.0
        for t in range(n_steps):
            if episode_starts[t, env]:
                product = 1.0
            product *= np.exp(log_ratios[t, env])
            weights[t, env] = product
    return weights


@pytest.mark.parametrize("seed", range(5))
def test_per_decision_matches_naive_loop(seed):
    rng = np.random.default_rng(seed)
    n_steps, n_envs = 23, 4
    log_ratios = rng.normal(scale=0.3, size=(n_steps, n_envs))
    episode_starts = rng.random((n_steps, n_envs)) < 0.2  # several boundaries inside the batch
    episode_starts[:, 0] = False  # one env whose episode runs through the whole batch
    episode_starts[0, 1] = True
    expected = naive_per_decision(log_ratios, episode_starts)
    got = per_decision_log_weights(th.as_tensor(log_ratios), th.as_tensor(episode_starts))
    assert got.shape == (n_steps, n_envs)
    np.testing.assert_allclose(np.exp(got.numpy()), expected, rtol=1e-10)


def test_per_decision_float32_gradient_flows_to_earlier_steps():
    log_ratios = th.zeros(5, 1, requires_grad=True)
    starts = th.tensor([[1.0], [0.0], [0.0], [1.0], [0.0]])
    log_w = per_decision_log_weights(log_ratios, starts)
    assert log_w.dtype == th.float32
    log_w[2, 0].backward()  # depends on steps 0, 1, 2 of its episode only
    np.testing.assert_array_equal(log_ratios.grad.flatten().numpy(), [1, 1, 1, 0, 0])


def test_value_loss_with_and_without_clipping():
    returns = th.tensor([1.0, 2.0, 3.0])
    old_values = th.tensor([0.0, 2.0, 5.0])
    values = th.tensor([2.0, 2.5, 1.0])
    assert value_loss(returns, values, old_values).item() == pytest.approx((1 + 0.25 + 4) / 3)
    # clipped predictions: 0 + 0.5, 2 + 0.5, 5 - 0.5
    assert value_loss(returns, values, old_values, 0.5).item() == pytest.approx((0.25 + 0.25 + 2.25) / 3)


def _cases():
    log_std = th.randn(2)
    return [
        (lambda x: CategoricalDistribution(3).proba_distribution(x), th.randn(10, 3)),
        (lambda x: DiagGaussianDistribution(2).proba_distribution(x, log_std), th.randn(10, 2)),
        (lambda x: MultiCategoricalDistribution([2, 3]).proba_distribution(x), th.randn(10, 5)),
        (lambda x: BernoulliDistribution(3).proba_distribution(x), th.randn(10, 3)),
    ]


@pytest.mark.parametrize("case", range(4))
def test_index_distribution_equals_distribution_built_on_the_rows(case):
    th.manual_seed(case)
    build, params = _cases()[case]
    indices = th.tensor([7, 2, 2, 0])
    sliced = index_distribution(build(params), indices)
    reference = build(params[indices])  # built directly from the selected rows' parameters
    actions = reference.sample()
    np.testing.assert_allclose(sliced.log_prob(actions).numpy(), reference.log_prob(actions).numpy(), rtol=1e-6)
    np.testing.assert_allclose(sliced.entropy().numpy(), reference.entropy().numpy(), rtol=1e-6)
    other = build(params[indices] + th.randn_like(params[indices]))
    np.testing.assert_allclose(exact_kl(sliced, other).numpy(), exact_kl(reference, other).numpy(), rtol=1e-6)


class _NaNWeights(ImportanceSampledPG):
    def log_weights(self, samples, log_prob, indices):
        return log_prob - samples.old_log_prob + float("nan")


def test_non_finite_weights_stop_training_before_any_step():
    model = _NaNWeights("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=16, batch_size=8, seed=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.raises(NonFiniteError, match="log_weights"):
        model.learn(32)
    for old, new in zip(before, model.policy.parameters(), strict=True):
        assert th.equal(old, new)


@pytest.mark.parametrize(
    ("algo", "kwargs", "epsilon"),
    [
        (ImportanceSampledPG, dict(min_ess=None), 0.3),  # no clip range: diagnostics_epsilon
        (AdaptiveKLPPO, dict(clip_range=0.1), 0.1),  # a PPO clip range: PPO's epsilon, as PPO's clip fraction
        (MDPO, dict(), 0.3),
    ],
    ids=["ispg", "ppo_kl_clip_range", "mdpo"],
)
def test_epoch_figures_have_ppos_meaning(algo, kwargs, epsilon, monkeypatch):
    """``train/clip_fraction`` and ``train/approx_kl`` are PPO's: means over every minibatch step of the
    epochs, of the weights that step used, at the clip range where there is one."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    base = dict(n_steps=32, batch_size=16, n_epochs=3, learning_rate=1e-2, diagnostics_epsilon=0.3, seed=0)
    model = algo("MlpPolicy", env, **{**base, **kwargs})
    model.learn(64)  # a first update, so that the recorded steps below are those of one train()
    seen = []
    original = model.log_weights

    def recorded(*args):
        log_w = original(*args)
        seen.append(log_w.detach().double().numpy())
        return log_w

    monkeypatch.setattr(model, "log_weights", recorded)
    model.learn(64, reset_num_timesteps=False)
    logged = model.logger.name_to_value

    assert len(seen) == 3 * 4 == logged["train/sgd_steps"]
    weights = [np.exp(log_w) for log_w in seen]
    clip_fraction = np.mean([np.mean(np.abs(w - 1.0) > epsilon) for w in weights])
    approx_kl = np.mean([np.mean((w - 1.0) - np.log(w)) for w in weights])
    assert clip_fraction > 0.0  # the epochs moved the policy, so the figure can tell the means apart
    assert logged["train/clip_fraction"] == pytest.approx(clip_fraction, abs=1e-6)  # float32 on the device
    assert logged["train/approx_kl"] == pytest.approx(approx_kl, rel=1e-4, abs=1e-7)
    # The post-update figures on the whole batch are another quantity, under their own keys.
    assert {"trust_region/clip_fraction", "trust_region/approx_kl", "trust_region/ess"} <= set(logged)


@pytest.mark.parametrize("sizes", [[16, 16, 16], [16, 16, 16, 5], [7]], ids=["equal", "short_last", "one"])
def test_minibatch_weight_figures_match_a_per_minibatch_numpy_reference(sizes):
    """The figures of all minibatches computed together equal each minibatch's own, computed naively."""
    rng = np.random.default_rng(len(sizes))
    log_weights = [th.as_tensor(rng.normal(scale=0.4, size=size)) for size in sizes]
    log_weights[0][0] = 30.0  # a weight far outside the trust region
    figures = minibatch_weight_figures(log_weights, epsilon=0.2)

    for row, log_w in enumerate(log_weights):
        w = np.exp(log_w.numpy())
        assert figures["ess"][row].item() == pytest.approx(w.sum() ** 2 / (w**2).sum() / len(w), rel=1e-10)
        assert figures["clip_fraction"][row].item() == pytest.approx(np.mean(np.abs(w - 1.0) > 0.2))
        assert figures["approx_kl"][row].item() == pytest.approx(np.mean(w - 1.0 - np.log(w)), rel=1e-10)
        assert figures["max_log_weight"][row].item() == log_w.max().item()
    assert all(value.shape == (len(sizes),) for value in figures.values())


@pytest.mark.parametrize("dict_obs", [False, True], ids=["box", "dict"])
def test_shuffled_minibatches_give_the_buffers_own_minibatches(dict_obs):
    """Indexing the ordered batch with shuffled_minibatches gives, draw for draw of the global generator,
    the minibatches SB3's RolloutBuffer.get yields."""
    env = make_vec_env(DictObsEnv if dict_obs else "CartPole-v1", n_envs=2, seed=0)
    model = ImportanceSampledPG("MultiInputPolicy" if dict_obs else "MlpPolicy", env, n_steps=24, batch_size=10, seed=0)
    model.learn(48)  # leaves a full buffer
    batch = model.ordered_batch()
    np.random.seed(3)  # noqa: NPY002 (the global generator is the one SB3 draws from)
    ours = [index_samples(batch, indices) for indices in model.shuffled_minibatches(48, 10)]
    np.random.seed(3)  # noqa: NPY002 (the global generator is the one SB3 draws from)
    theirs = list(model.rollout_buffer.get(10))
    assert [len(samples.returns) for samples in ours] == [10, 10, 10, 10, 8]
    for mine, sb3 in zip(ours, theirs, strict=True):
        for field, expected in zip(mine, sb3, strict=True):
            if isinstance(field, dict):
                assert all(th.equal(field[key], expected[key]) for key in expected)
            else:
                assert th.equal(field, expected)


def test_entropy_loss_closed_form_and_single_sample_fallback():
    """-mean(entropy) where the distribution has a closed form (checked against -sum p log p), and
    mean(log_prob) of the batch's actions for the squashed Gaussian, which has none."""
    logits = th.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]])
    categorical = CategoricalDistribution(3).proba_distribution(logits)
    p = th.softmax(logits, dim=1)
    expected = (p * th.log(p)).sum(dim=1).mean()  # -mean(H)
    assert policy_entropy_loss(categorical, th.zeros(2)).item() == pytest.approx(expected.item(), rel=1e-6)

    squashed = SquashedDiagGaussianDistribution(2).proba_distribution(th.zeros(4, 2), th.zeros(2))
    assert squashed.entropy() is None
    log_prob = th.tensor([-1.0, -2.0, -3.0, -4.0])
    assert policy_entropy_loss(squashed, log_prob).item() == pytest.approx(-2.5)
