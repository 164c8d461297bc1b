"""Diagnostics core against naive float64 formulas written out sample by sample."""

import math

import numpy as np
import pytest
import torch as th

from sb3_pgx import clip_fraction, effective_sample_size, kl_k1, kl_k3, normalized_ess, ratio_stats


def naive_ess(log_w: list[float]) -> float:
    w = [math.exp(x) for x in log_w]
    return sum(w) ** 2 / sum(x * x for x in w)


@pytest.fixture
def log_w() -> th.Tensor:
    return th.randn(257, generator=th.Generator().manual_seed(3), dtype=th.float64) * 0.7


def test_ess_matches_kish_formula(log_w):
    expected = naive_ess(log_w.tolist())
    assert effective_sample_size(log_w).item() == pytest.approx(expected, rel=1e-10)
    assert normalized_ess(log_w).item() == pytest.approx(expected / 257, rel=1e-10)


def test_ess_is_invariant_to_a_common_scale(log_w):
    # ESS only depends on relative weights: a shift of every log-weight changes nothing.
    assert effective_sample_size(log_w + 500.0).item() == pytest.approx(effective_sample_size(log_w).item(), rel=1e-10)


def test_ess_extremes():
    uniform = th.zeros(10, dtype=th.float64)
    assert normalized_ess(uniform).item() == pytest.approx(1.0)
    # One weight exp(1000) dominates: ESS -> 1, no overflow.
    one_dominant = th.tensor([1000.0, -1000.0, 0.0, 0.0], dtype=th.float64)
    assert effective_sample_size(one_dominant).item() == pytest.approx(1.0)
    # Two equal huge weights and two tiny: ESS = 2.
    two = th.tensor([1000.0, 1000.0, -1000.0, -1000.0], dtype=th.float64)
    assert effective_sample_size(two).item() == pytest.approx(2.0)


def test_batch_of_one():
    single = th.tensor([0.3], dtype=th.float64)
    assert effective_sample_size(single).item() == pytest.approx(1.0)
    assert normalized_ess(single).item() == pytest.approx(1.0)
    assert clip_fraction(single, 0.2).item() == pytest.approx(1.0)  # ratio exp(0.3) = 1.35 > 1.2
    assert kl_k1(single).item() == pytest.approx(-0.3)
    assert kl_k3(single).item() == pytest.approx(math.exp(0.3) - 1 - 0.3)
    assert ratio_stats(single)["max_ratio"].item() == pytest.approx(math.exp(0.3))


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.2, 0.5, 1.0, 3.0])
def test_clip_fraction_matches_naive_count(log_w, epsilon):
    expected = sum(abs(math.exp(x) - 1) > epsilon for x in log_w.tolist()) / len(log_w)
    assert clip_fraction(log_w, epsilon).item() == pytest.approx(expected)


def test_kl_estimators_match_naive_means(log_w):
    values = log_w.tolist()
    assert kl_k1(log_w).item() == pytest.approx(np.mean([-x for x in values]), rel=1e-12)
    assert kl_k3(log_w).item() == pytest.approx(np.mean([math.exp(x) - 1 - x for x in values]), rel=1e-12)


def test_k3_estimates_the_true_kl_of_two_gaussians():
    # Samples from p = N(0, 1), q = N(0.3, 1): KL(p || q) = 0.3^2 / 2 in closed form.
    gen = th.Generator().manual_seed(0)
    x = th.randn(400_000, generator=gen, dtype=th.float64)
    log_w = -0.5 * (x - 0.3) ** 2 + 0.5 * x**2  # log q(x) - log p(x)
    assert kl_k3(log_w).item() == pytest.approx(0.045, rel=0.03)
    assert kl_k1(log_w).item() == pytest.approx(0.045, rel=0.05)


def test_extreme_log_weights_give_no_nan():
    log_w = th.tensor([1000.0, -1000.0, 0.0], dtype=th.float64)
    for value in (
        effective_sample_size(log_w),
        normalized_ess(log_w),
        clip_fraction(log_w, 0.2),
        kl_k1(log_w),
        kl_k3(log_w),
        *ratio_stats(log_w).values(),
    ):
        assert not th.isnan(value)
    assert clip_fraction(log_w, 0.2).item() == pytest.approx(2 / 3)
    assert kl_k1(log_w).item() == pytest.approx(0.0)
    # A weight of exp(1000) is beyond float64: k3's true value is not representable -> +inf, not NaN.
    assert kl_k3(log_w).item() == math.inf
    # Without the huge weight k3 stays finite: exp(-1000) - 1 + 1000.
    assert kl_k3(th.tensor([-1000.0], dtype=th.float64)).item() == pytest.approx(999.0)
    assert ratio_stats(log_w)["min_ratio"].item() == 0.0


def test_ratio_quantiles_match_numpy_nearest(log_w):
    stats = ratio_stats(log_w, quantiles=(0.5, 0.9, 0.99))
    ratios = np.exp(log_w.numpy())
    for q, key in ((0.5, "ratio_q50"), (0.9, "ratio_q90"), (0.99, "ratio_q99")):
        assert stats[key].item() == pytest.approx(np.quantile(ratios, q, method="nearest"), rel=1e-12)
    assert stats["max_ratio"].item() == pytest.approx(ratios.max())
    assert stats["min_ratio"].item() == pytest.approx(ratios.min())


def test_rows_of_minibatches_give_each_rows_own_figures():
    """On ``[M, N]`` every diagnostic reduces over the last dimension: row m's figure is that of row m alone."""
    rows = th.as_tensor(np.random.default_rng(7).normal(scale=0.5, size=(4, 9)))
    rows[2, 3] = 800.0  # one huge weight: its row's ESS is 1, the others' unchanged
    for function in (effective_sample_size, normalized_ess, kl_k1, kl_k3, lambda x: clip_fraction(x, 0.2)):
        batched = function(rows)
        assert batched.shape == (4,)
        assert th.equal(batched, th.stack([function(row) for row in rows]))
