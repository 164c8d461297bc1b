"""V-trace off-policy targets (IMPALA, Espeholt et al. 2018, https://arxiv.org/abs/1802.01561).

A small pure function on time-major tensors ``[T, N]`` (T time steps, N independent
trajectories). It is vectorised over N and makes one backward pass over T.
"""

import math
from typing import NamedTuple

import torch as th


class VTraceReturns(NamedTuple):
    """Output of :func:`vtrace`.

    :param vs: value targets ``v_s``, shape ``[T, N]``
    :param pg_advantages: policy-gradient advantages
        ``min(pg_rho_bar, w_s) * (r_s + gamma_s (lambda v_{s+1} + (1 - lambda) V(x_{s+1})) - V(x_s))``
        (rlax's; the paper's ``v_{s+1}`` alone at lambda = 1), shape ``[T, N]``
    """

    vs: th.Tensor
    pg_advantages: th.Tensor


def _log_clip(value: float) -> float:
    """``log(value)`` for a positive clip level, ``+inf`` for an infinite one."""
    if not value > 0:
        raise ValueError(f"clip levels must be > 0, got {value!r}")
    return math.log(value) if math.isfinite(value) else math.inf


def vtrace(
    log_rhos: th.Tensor,
    discounts: th.Tensor,
    rewards: th.Tensor,
    values: th.Tensor,
    bootstrap_value: th.Tensor,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    pg_rho_bar: float = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturns:
    """V-trace value targets and policy-gradient advantages.

    With ``w_t = pi(a_t|x_t) / mu(a_t|x_t)``, ``rho_t = min(rho_bar, w_t)``,
    ``c_t = lambda min(c_bar, w_t)`` and ``delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))``::

        v_s = V(x_s) + delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1}))

    computed backwards from ``v_T = V(x_T) = bootstrap_value``. ``gamma_t`` is the discount
    applied after step t: ``gamma * (1 - done_t)`` where ``done_t`` means the episode ended
    after step t (0 there cuts both the bootstrap and the trace). The policy-gradient
    advantage bootstraps on the same lambda-mix as the trace (rlax's ``vtrace_td_error_and_advantage``)::

        A_s = min(pg_rho_bar, w_s) (r_s + gamma_s (lambda v_{s+1} + (1 - lambda) V(x_{s+1})) - V(x_s))

    so that on-policy (all weights 1) ``A_s = v_s - V(x_s)`` is exactly GAE(lambda); the
    paper's ``v_{s+1}`` alone equals it only at lambda = 1.

    Everything is computed without gradient: the outputs are regression targets and
    advantage weights.

    :param log_rhos: log importance weights ``log pi(a_t|x_t) - log mu(a_t|x_t)``, ``[T, N]``
    :param discounts: ``gamma_t``, ``[T, N]``
    :param rewards: ``r_t``, ``[T, N]``
    :param values: ``V(x_t)`` under the current value function, ``[T, N]``
    :param bootstrap_value: ``V(x_T)``, the value of the observation after the last step, ``[N]``
    :param rho_bar: truncation of the weights in ``delta_t`` (fixes the value the targets
        converge to), ``> 0``, may be ``math.inf``
    :param c_bar: truncation of the trace coefficients (speed of contraction), ``> 0``
    :param pg_rho_bar: truncation of the weight in the policy-gradient advantage, ``> 0``
    :param lambda_: trace decay in ``[0, 1]`` (1: the paper's V-trace; with all weights 1 the
        targets are the TD(lambda) returns and the advantages GAE(lambda))
    :return: :class:`VTraceReturns` with ``vs`` and ``pg_advantages``, each ``[T, N]``
    """
    if log_rhos.ndim != 2:
        raise ValueError(f"log_rhos must be [T, N], got shape {tuple(log_rhos.shape)}")
    for name, tensor in (("discounts", discounts), ("rewards", rewards), ("values", values)):
        if tensor.shape != log_rhos.shape:
            raise ValueError(f"{name} must have the shape of log_rhos {tuple(log_rhos.shape)}, got {tuple(tensor.shape)}")
    if bootstrap_value.shape != log_rhos.shape[1:]:
        raise ValueError(f"bootstrap_value must be [N] = {tuple(log_rhos.shape[1:])}, got {tuple(bootstrap_value.shape)}")

    with th.no_grad():
        # Truncate in log space, so that a huge weight cannot overflow before it is clipped.
        rhos = th.exp(th.clamp(log_rhos, max=_log_clip(rho_bar)))
        cs = lambda_ * th.exp(th.clamp(log_rhos, max=_log_clip(c_bar)))
        pg_rhos = th.exp(th.clamp(log_rhos, max=_log_clip(pg_rho_bar)))

        values_tp1 = th.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
        deltas = rhos * (rewards + discounts * values_tp1 - values)

        # v_s - V(x_s) = delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1})), one pass from the end.
        vs_minus_v = th.empty_like(values)
        acc = th.zeros_like(bootstrap_value)
        for t in range(values.shape[0] - 1, -1, -1):
            acc = deltas[t] + discounts[t] * cs[t] * acc
            vs_minus_v[t] = acc
        vs = values + vs_minus_v

        # v_T = V(x_T): the last step's mix is the bootstrap value whatever lambda is.
        vs_tp1 = th.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
        mixed_tp1 = lambda_ * vs_tp1 + (1.0 - lambda_) * values_tp1
        pg_advantages = pg_rhos * (rewards + discounts * mixed_tp1 - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)
