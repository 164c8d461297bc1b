"""How far an update moved the policy from the batch it was computed on.

One function, :func:`policy_update_stats`, is used both by the algorithms (to log their own
figures after each update) and by the monitoring callbacks (for any SB3 on-policy
algorithm), so the two always report the same numbers for the same update.

A behaviour batch also carries what the behaviour policy's distribution was conditioned on
besides the observations: sb3-contrib's action masks (MaskablePPO) or the LSTM state at
the rollout's first step (RecurrentPPO), so that old and new probabilities are those of
the same distribution.

Cost rules, so that the figures can be logged after every update on any device: the policy
is evaluated once, in float32 on its own device; the statistics run in float64 on one CPU copy
of the log-weights (one transfer, the only host-device sync); and the policy is switched to
eval mode only if its forward depends on the mode (:func:`is_mode_dependent`), because SB3's
``set_training_mode`` walks every module in Python.
"""

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableMultiCategoricalDistribution
from stable_baselines3.common.distributions import Distribution, kl_divergence
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import TensorDict
from torch import nn

from sb3_pgx.common.diagnostics import clip_fraction, kl_k1, kl_k3, normalized_ess, ratio_stats

#: torch modules whose forward differs between training and eval mode: random masks (Dropout and
#: its variants) or batch statistics (BatchNorm). InstanceNorm, RNNs and attention only when set
#: up to (running statistics, dropout > 0), see :func:`is_mode_dependent`.
MODE_DEPENDENT_MODULES: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def is_mode_dependent(module: nn.Module) -> bool:
    """Whether ``module``'s forward may give other outputs in training mode than in eval mode.

    True when any sub-module is one of :data:`MODE_DEPENDENT_MODULES`, an InstanceNorm with
    running statistics, an RNN or MultiheadAttention with ``dropout > 0``, or declares itself so
    with a true ``mode_dependent`` attribute (set it on a custom module whose ``forward`` reads
    ``self.training``, which cannot be detected). False for SB3's MLP and CNN policies and
    features extractors: their eval-mode and training-mode passes are the same computation,
    so one pass can stand for both.
    """
    for sub in module.modules():
        # Looked up in the instance's and the class's dicts: nn.Module's __getattr__ would raise
        # (and catch) an AttributeError for every module without the attribute, which is slow.
        declared = sub.__dict__.get("mode_dependent", getattr(type(sub), "mode_dependent", False))
        if declared or isinstance(sub, MODE_DEPENDENT_MODULES):
            return True
        if isinstance(sub, nn.modules.instancenorm._InstanceNorm) and sub.track_running_stats:
            return True
        if isinstance(sub, (nn.RNNBase, nn.MultiheadAttention)) and sub.dropout > 0:
            return True
    return False


@contextmanager
def distribution_checks(enabled: bool) -> Iterator[None]:
    """Switch torch.distributions' argument checks on or off inside the block, then restore them.

    Each check is a ``.all()`` read, i.e. a host-device sync, in every distribution built and every
    ``log_prob`` taken. Where the inputs come from the policy and the rollout buffer and a
    non-finite guard follows (the algorithms' ``train()``) or the result is only measured (the
    post-update figures), they cost syncs and catch nothing the guard does not.
    """
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


@contextmanager
def eval_mode(policy: BasePolicy, mode_dependent: bool | None = None) -> Iterator[None]:
    """Run the block with ``policy`` in eval mode (as SB3 collects rollouts), then restore its mode.

    A policy whose forward does not depend on the mode (:func:`is_mode_dependent`) is left as it is:
    the outputs are the same, and switching costs a Python walk over every module twice.

    :param mode_dependent: ``is_mode_dependent(policy)`` if the caller knows it (None: found here)
    """
    if not (is_mode_dependent(policy) if mode_dependent is None else mode_dependent):
        yield
        return
    was_training = policy.training
    policy.set_training_mode(False)
    try:
        yield
    finally:
        policy.set_training_mode(was_training)


#: Logger prefix of the figures :func:`policy_update_stats` measures after an update on its whole
#: batch, written under the same keys by the algorithms and by the monitor callbacks. They are not
#: PPO's ``train/clip_fraction`` / ``train/approx_kl`` (minibatch averages during the epochs).
TRUST_REGION_PREFIX = "trust_region"


def trust_region_epsilon(model: Any) -> float:
    """Half-width epsilon of the trust region ``|w - 1| <= epsilon`` for ``model``'s current update.

    ``model``'s PPO clip range where it has one (PPO, AdaptiveKLPPO with ``clip_range``), evaluated at
    ``model._current_progress_remaining`` (which SB3 updates only after a rollout, so it is the value
    the last ``train()`` used); else its ``diagnostics_epsilon`` (sb3_pgx algorithms); else 0.2.
    """
    clip_range = getattr(model, "clip_range", None)
    if clip_range is not None:
        return float(clip_range(model._current_progress_remaining) if callable(clip_range) else clip_range)
    diagnostics_epsilon = getattr(model, "diagnostics_epsilon", None)
    if diagnostics_epsilon is not None:
        return float(diagnostics_epsilon)
    return 0.2


def action_tensor(actions: th.Tensor, action_space: spaces.Space) -> th.Tensor:
    """Actions as the policy's distributions expect them.

    The rollout buffer stores every action as float ``[N, action_dim]``; a Discrete action
    must become a long tensor of shape ``[N]``.
    """
    if isinstance(action_space, spaces.Discrete):
        return actions.long().flatten()
    return actions


def exact_kl(old_distribution: Distribution, new_distribution: Distribution) -> th.Tensor:
    """Per-sample KL(old || new) of two SB3 distributions of the same kind, shape ``[N]``.

    SB3's ``kl_divergence`` returns one column per action dimension for factorised
    distributions (diagonal Gaussian, Bernoulli); the KL of the joint is their sum.
    sb3-contrib's masked MultiDiscrete / MultiBinary distribution is not one SB3's function
    knows (it keeps its categoricals in ``distributions``): its KL is the sum over its
    independent components. Masked-out actions have probability 0 under both, so they add 0.
    """
    if isinstance(old_distribution, MaskableMultiCategoricalDistribution):
        components = zip(old_distribution.distributions, new_distribution.distributions, strict=True)
        return th.stack([th.distributions.kl_divergence(old, new) for old, new in components], dim=1).sum(dim=1)
    kl = kl_divergence(old_distribution, new_distribution)
    return kl.sum(dim=-1) if kl.ndim > 1 else kl


@dataclass
class BehaviourBatch:
    """What an update was computed on: the behaviour policy's data.

    :param observations: ``[N, *obs_shape]`` (or a dict of them)
    :param actions: as returned by :func:`action_tensor`
    :param old_log_prob: log-probabilities of ``actions`` under the behaviour policy, ``[N]``
    :param old_distribution: the behaviour policy's distribution on ``observations``
        (from :func:`snapshot_distribution`); without it no exact KL is reported
    :param action_masks: the action masks the behaviour policy acted under (sb3-contrib's
        maskable policies), ``[N, mask_dims]``; None for unmasked policies
    :param lstm_states: recurrent policies: the actor's LSTM ``(hidden, cell)`` state at the
        start of each sequence, each ``[num_layers, S, hidden_size]``. The batch is then laid
        out as ``S`` sequences of one length ``L`` (sequence ``s`` at rows ``s * L ... s * L + L - 1``,
        in time order), padded at their ends, and the policy is re-run over all of them at once
    :param episode_starts: recurrent policies: ``[N]``, 1.0 where a sequence resets to a zero
        LSTM state inside; None when none does (the LSTM then runs in one call)
    :param valid: ``[N]`` bool, False on the rows that only pad a recurrent sequence; the
        statistics leave them out. None: every row is a sample
    """

    observations: th.Tensor | TensorDict
    actions: th.Tensor
    old_log_prob: th.Tensor
    old_distribution: Distribution | None = None
    action_masks: th.Tensor | None = None
    lstm_states: tuple[th.Tensor, th.Tensor] | None = None
    episode_starts: th.Tensor | None = None
    valid: th.Tensor | None = None

    def distribution(self, policy: BasePolicy) -> Distribution:
        """``policy``'s action distribution on this batch, conditioned as the behaviour policy's was.

        Plain actor-critic policies see the observations alone; maskable ones also the
        stored masks; recurrent ones the LSTM state carried through each sequence from its
        start state, reset at ``episode_starts`` if any.
        """
        if self.lstm_states is not None:
            episode_starts = self.episode_starts
            if episode_starts is None:
                episode_starts = th.zeros(len(self.old_log_prob), device=self.old_log_prob.device)
            distribution, _ = policy.get_distribution(self.observations, self.lstm_states, episode_starts)
            return distribution
        if self.action_masks is not None:
            return policy.get_distribution(self.observations, action_masks=self.action_masks)
        return policy.get_distribution(self.observations)


def map_distribution(distribution: Distribution, fn: Callable[[th.Tensor], th.Tensor]) -> Distribution:
    """A new SB3 distribution of the same kind, with ``fn`` applied to each parameter tensor.

    Supports the torch distributions SB3 builds (Normal for diagonal Gaussian and gSDE,
    Categorical, Bernoulli, and the list of Categoricals of MultiCategorical).

    :param distribution: SB3 distribution over a batch
    :param fn: applied to the location and scale (Normal) or the logits (Categorical, Bernoulli)
    :return: the mapped distribution; ``distribution`` is left unchanged
    """

    def mapped(torch_distribution: th.distributions.Distribution) -> th.distributions.Distribution:
        if isinstance(torch_distribution, th.distributions.Normal):
            return th.distributions.Normal(fn(torch_distribution.loc), fn(torch_distribution.scale), validate_args=False)
        if isinstance(torch_distribution, th.distributions.Categorical):
            return th.distributions.Categorical(logits=fn(torch_distribution.logits), validate_args=False)
        if isinstance(torch_distribution, th.distributions.Bernoulli):
            return th.distributions.Bernoulli(logits=fn(torch_distribution.logits), validate_args=False)
        raise TypeError(f"cannot map a {type(torch_distribution).__name__}")

    result = copy.copy(distribution)
    inner = distribution.distribution
    result.distribution = [mapped(d) for d in inner] if isinstance(inner, list) else mapped(inner)
    return result


def snapshot_distribution(policy: BasePolicy, observations: th.Tensor | TensorDict | BehaviourBatch) -> Distribution:
    """The policy's action distribution on ``observations``, frozen.

    ``observations`` may also be a :class:`BehaviourBatch`, whose distribution is then
    conditioned as it was collected (masks, recurrent state). SB3 distributions are mutable
    objects that the policy re-fills on every call, so the snapshot is a shallow copy holding
    tensors computed without gradient.
    """
    with th.no_grad():
        if isinstance(observations, BehaviourBatch):
            return copy.copy(observations.distribution(policy))
        return copy.copy(policy.get_distribution(observations))


def update_log_weights(policy: BasePolicy, batch: BehaviourBatch) -> tuple[th.Tensor, th.Tensor | None]:
    """Evaluate the current policy on the behaviour batch, in eval mode (as during rollouts, where
    ``old_log_prob`` came from) and without gradient.

    :param policy: the policy after the update
    :param batch: the data the update used
    :return: ``(log_weights, kl)``: ``log pi_new(a|s) - log pi_old(a|s)``, ``[N]``, and the
        per-sample exact ``KL(pi_old || pi_new)``, ``[N]`` (None when the batch has no behaviour
        distribution); on the policy's device, padding rows included
    """
    with eval_mode(policy), th.no_grad(), distribution_checks(False):
        distribution = batch.distribution(policy)
        log_weights = (distribution.log_prob(batch.actions) - batch.old_log_prob).flatten()
        kl = None if batch.old_distribution is None else exact_kl(batch.old_distribution, distribution)
    return log_weights, kl


def log_weight_stats(
    log_weights: th.Tensor, clip_epsilon: float, kl: th.Tensor | None = None, valid: th.Tensor | None = None
) -> dict[str, float]:
    """The trust-region figures of a batch's log importance weights, computed in float64 on one CPU copy.

    :param log_weights: ``log w``, ``[N]``, on any device
    :param clip_epsilon: trust-region half-width for the clip fraction
    :param kl: per-sample exact ``KL(pi_old || pi_new)``, ``[N]``, or None
    :param valid: ``[N]`` bool, False on rows to leave out (recurrent padding); None: all rows
    :return: ``ess`` (normalised, ESS/N), ``clip_fraction``, ``approx_kl`` (k3), ``kl_k1``,
        ``max_ratio`` and, with ``kl``, ``kl``, the exact mean KL(pi_old || pi_new)
    """
    rows = log_weights.detach().flatten()[None]
    if kl is not None:
        rows = th.cat([rows, kl.detach().flatten()[None]])
    host = rows.cpu().double()  # the one transfer; float64 only on the CPU copy
    if valid is not None:
        host = host[:, valid.cpu()]
    log_weights = host[0]
    stats = {
        "ess": normalized_ess(log_weights),
        "clip_fraction": clip_fraction(log_weights, clip_epsilon),
        "approx_kl": kl_k3(log_weights),
        "kl_k1": kl_k1(log_weights),
        "max_ratio": ratio_stats(log_weights, quantiles=())["max_ratio"],
    }
    if kl is not None:
        stats["kl"] = host[1].mean()
    return dict(zip(stats, th.stack(list(stats.values())).tolist(), strict=True))  # one read, not one per figure


def policy_update_stats(policy: BasePolicy, batch: BehaviourBatch, clip_epsilon: float) -> dict[str, float]:
    """Evaluate the current policy on the behaviour batch (:func:`update_log_weights`) and return
    its trust-region figures (:func:`log_weight_stats`).

    :param policy: the policy after the update
    :param batch: the data the update used
    :param clip_epsilon: trust-region half-width for the clip fraction
    :return: ``ess`` (normalised, ESS/N), ``clip_fraction``, ``approx_kl`` (k3), ``kl_k1``,
        ``max_ratio`` and, when the batch has the behaviour distribution, ``kl``, the exact
        mean KL(pi_old || pi_new)
    """
    log_weights, kl = update_log_weights(policy, batch)
    return log_weight_stats(log_weights, clip_epsilon, kl=kl, valid=batch.valid)
