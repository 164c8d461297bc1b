"""Natural-gradient building blocks: Fisher-vector products and the KL-radius step size.

The Fisher information matrix of the policy is the Hessian, at theta_old, of the mean
``KL(pi_old || pi_theta)`` over the batch (Kakade 2001; the KL's gradient vanishes at
theta_old and its Hessian equals ``E[score score^T]``). It is never built: ``F v`` is the
gradient of ``grad_KL . v`` (double back-prop), which costs about two backward passes.
"""

import math
from collections.abc import Sequence

import torch as th
from torch import nn


def kl_gradient(mean_kl: th.Tensor, params: Sequence[nn.Parameter]) -> tuple[list[nn.Parameter], th.Tensor]:
    """Flat gradient of ``mean_kl``, kept differentiable, over the parameters it depends on.

    Parameters that do not reach the KL (an unused layer, a frozen head) have no Fisher block;
    they are dropped, and the returned list says which parameters the flat vector lines up with.

    :param mean_kl: scalar, mean KL(pi_old || pi_theta) over the batch (built with grad)
    :param params: candidate parameters
    :return: ``(used_params, grad_kl)`` with ``grad_kl`` of shape ``[sum of numel of used_params]``
        and a graph for :func:`fisher_vector_product`
    """
    candidates = [param for param in params if param.requires_grad]
    grads = th.autograd.grad(mean_kl, candidates, create_graph=True, retain_graph=True, allow_unused=True)
    used = [(param, grad) for param, grad in zip(candidates, grads, strict=True) if grad is not None]
    if not used:
        raise ValueError("None of the parameters influences the KL: there is no Fisher to invert.")
    return [param for param, _ in used], th.cat([grad.flatten() for _, grad in used])


def fisher_vector_product(
    grad_kl: th.Tensor,
    params: Sequence[nn.Parameter],
    vector: th.Tensor,
    damping: float = 0.0,
    retain_graph: bool = True,
) -> th.Tensor:
    """``(F + damping * I) v`` with ``F`` the Hessian of the KL whose gradient is ``grad_kl``.

    ``d/dtheta (grad_KL(theta) . v) = H v`` because ``v`` does not depend on theta.

    :param grad_kl: ``[D]`` flat gradient of the mean KL, from :func:`kl_gradient`
    :param params: the parameters ``grad_kl`` was taken with respect to (total size ``D``)
    :param vector: ``[D]`` the vector ``v`` (treated as a constant)
    :param damping: Tikhonov damping added to the diagonal (>= 0)
    :param retain_graph: keep the graph of ``grad_kl`` for further products
    :return: ``[D]``
    """
    directional = (grad_kl * vector.detach()).sum()
    grads = th.autograd.grad(directional, params, retain_graph=retain_graph, allow_unused=True)
    # A parameter the KL depends on only linearly (none in SB3's heads, but possible) has a
    # zero Hessian block: autograd reports None, which must stay aligned as zeros.
    hessian_vector = th.cat(
        [th.zeros_like(p).flatten() if g is None else g.flatten() for g, p in zip(grads, params, strict=True)]
    )
    return hessian_vector + damping * vector


def natural_step_size(target_kl: float, quadratic_form: float) -> float:
    """Scale ``beta`` so that the step ``beta * x`` has ``0.5 * beta^2 * x^T F x = target_kl``.

    Under the quadratic model ``KL(theta_old + s) ~= 0.5 * s^T F s`` the step then lands on
    the KL radius: ``beta = sqrt(2 * target_kl / x^T F x)``.

    :param target_kl: the KL radius delta (> 0)
    :param quadratic_form: ``x^T F x``
    :return: ``beta``, or NaN when the quadratic form is not a positive finite number
        (a degenerate direction the caller must not step along)
    """
    if not math.isfinite(quadratic_form) or quadratic_form <= 0.0:
        return math.nan
    return math.sqrt(2.0 * target_kl / quadratic_form)
