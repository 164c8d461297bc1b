"""Trust-region diagnostics of importance weights.

Small pure functions on a batch of log importance weights
``log_w = log pi_new(a|s) - log pi_old(a|s)``. They work in log space so that weights of
``exp(+-1000)`` give finite answers wherever the true answer is finite, and never NaN.
Every function takes log-weights of shape ``[..., N]`` (N >= 1), reduces over the last
dimension and returns a tensor of shape ``[...]`` of the same dtype: one figure for a 1-D batch,
one per row for ``[M, N]`` (M minibatches of one size, computed in one call). ``ratio_stats``
takes 1-D batches only.
"""

import math
from collections.abc import Sequence

import torch as th


def effective_sample_size(log_weights: th.Tensor) -> th.Tensor:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``.

    Computed on ``w / max(w) = exp(log_w - max(log_w))``, which the ratio does not change, so that it
    is exact for weights far outside the float range: the largest scaled weight is 1, the sums are
    at least 1, and weights too small to matter underflow to 0. (Half the small ops of the
    ``exp(2 logsumexp(log_w) - logsumexp(2 log_w))`` form, which gives the same numbers.)

    :param log_weights: log importance weights, shape ``[..., N]``
    :return: ESS in ``[1, N]``, shape ``[...]``
    """
    scaled = th.exp(log_weights - log_weights.amax(dim=-1, keepdim=True))
    return scaled.sum(dim=-1).square() / scaled.square().sum(dim=-1)


def normalized_ess(log_weights: th.Tensor) -> th.Tensor:
    """Effective sample size divided by N, in ``(0, 1]``.

    1 means the batch is worth as much as fresh on-policy data; ``1/N`` means one sample
    carries all the weight.

    :param log_weights: log importance weights, shape ``[..., N]``
    :return: ESS / N, shape ``[...]``
    """
    return effective_sample_size(log_weights) / log_weights.shape[-1]


def clip_fraction(log_weights: th.Tensor, epsilon: float) -> th.Tensor:
    """Share of samples outside the trust region ``|w - 1| > epsilon``.

    The test is done on the log-weights (``log_w > log(1 + eps)`` or
    ``log_w < log(1 - eps)``), so huge weights cannot overflow.

    :param log_weights: log importance weights, shape ``[..., N]``
    :param epsilon: half-width of the region around ratio 1, ``epsilon >= 0``
    :return: fraction in ``[0, 1]``, shape ``[...]``
    """
    # The bounds as Python floats: no tensors to build (this runs at every gradient step).
    outside = log_weights > math.log1p(epsilon)
    if epsilon < 1.0:
        outside = outside | (log_weights < math.log1p(-epsilon))
    return outside.to(log_weights.dtype).mean(dim=-1)


def kl_k1(log_weights: th.Tensor) -> th.Tensor:
    """k1 estimator of KL(pi_old || pi_new): ``mean(-log_w)``, samples drawn from pi_old.

    Unbiased, high variance, can be negative on a finite batch.

    :param log_weights: log importance weights, shape ``[..., N]``
    :return: estimate, shape ``[...]``
    """
    return (-log_weights).mean(dim=-1)


def kl_k3(log_weights: th.Tensor) -> th.Tensor:
    """k3 estimator of KL(pi_old || pi_new): ``mean((w - 1) - log_w)``, samples from pi_old.

    Unbiased and never negative; the estimator SB3's PPO logs as ``approx_kl``. Computed with
    ``expm1`` for accuracy near ``w = 1``. A weight above the float range makes the true
    value unrepresentable and the result is ``+inf`` (never NaN).

    :param log_weights: log importance weights, shape ``[..., N]``
    :return: estimate, shape ``[...]``
    """
    return (th.expm1(log_weights) - log_weights).mean(dim=-1)


def ratio_stats(log_weights: th.Tensor, quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> dict[str, th.Tensor]:
    """Extremes and quantiles of the importance ratio ``w``.

    Quantiles are taken on the log-weights with ``nearest`` interpolation and then
    exponentiated; since ``exp`` is monotone these are exactly the ratio quantiles.

    :param log_weights: log importance weights, shape ``[N]``
    :param quantiles: levels in ``[0, 1]``
    :return: ``{"max_ratio", "min_ratio", "ratio_q50", ...}``, each of shape ``[]``
        (``ratio_q<100*q>`` with the level written without a dot, e.g. ``ratio_q99``)
    """
    stats = {"max_ratio": th.exp(log_weights.max()), "min_ratio": th.exp(log_weights.min())}
    if len(quantiles) > 0:
        levels = th.as_tensor(list(quantiles), dtype=log_weights.dtype, device=log_weights.device)
        values = th.exp(th.quantile(log_weights, levels, interpolation="nearest"))
        for q, value in zip(quantiles, values, strict=True):
            stats[f"ratio_q{100 * q:g}".replace(".", "_")] = value
    return stats
