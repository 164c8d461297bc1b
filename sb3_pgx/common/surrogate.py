"""The shared core of the importance-sampled family: epochs of SGD on a penalised IS surrogate.

ImportanceSampledPG, AdaptiveKLPPO and MDPO all minimise, for several epochs of minibatch
(or full-batch) steps on one rollout,

    loss = -(surrogate(w, A) - penalty) + ent_coef * entropy_loss + vf_coef * value_loss

with ``w = pi_new(a|s) / pi_old(a|s)``. :class:`SurrogateAlgorithm` owns that loop, the value
loss (optionally clipped as in PPO), the non-finite guard, the gradient clipping and the
diagnostics. An algorithm states only what differs, through small hooks:

- :meth:`~SurrogateAlgorithm.log_weights`: the importance weights (per step by default)
- :meth:`~SurrogateAlgorithm.surrogate`: ``mean(w * A)`` by default
- :meth:`~SurrogateAlgorithm.penalty`: zero by default
- :meth:`~SurrogateAlgorithm.after_epoch`: whether to run another epoch
- :meth:`~SurrogateAlgorithm.after_update`: schedules adapted once per batch

The pure functions of the family live here too, each tested against a naive reference.
"""

from collections.abc import Sequence
from typing import Any

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, RolloutBufferSamples, Schedule
from stable_baselines3.common.utils import FloatSchedule
from torch.nn import functional as F

from sb3_pgx.common.base import (
    PGAlgorithm,
    bounded_log_weights,
    index_samples,
    policy_entropy_loss,
    without_distribution_checks,
)
from sb3_pgx.common.diagnostics import clip_fraction, kl_k3, normalized_ess
from sb3_pgx.common.update_stats import BehaviourBatch, action_tensor, map_distribution, trust_region_epsilon
from sb3_pgx.common.validation import check_batch_size, check_int, check_schedule

# ----------------------------------------------------------------------------- pure functions


def per_decision_log_weights(log_ratios: th.Tensor, episode_starts: th.Tensor) -> th.Tensor:
    """Per-decision log importance weights ``log prod_{t0 <= t' <= t} w_t'`` on a time-ordered batch.

    ``t0`` is the start of the episode that step ``t`` belongs to, or the first step of the
    batch when the episode began in an earlier rollout. Computed as a cumulative sum over
    time minus the cumulative sum just before the last episode start, in the dtype of
    ``log_ratios`` (no float64 on the device in training: in float32 the difference of two
    sums of T log-ratios is off by about ``T * 1e-7`` times their size, far below the spread
    of per-decision weights; float64 inputs give float64 precision); differentiable.

    :param log_ratios: per-step ``log pi_new(a_t|s_t) - log pi_old(a_t|s_t)``, shape ``[T, N]``
    :param episode_starts: 1 (or True) where step ``t`` is the first of an episode, shape ``[T, N]``
    :return: per-decision log-weights, shape ``[T, N]``, dtype of ``log_ratios``
    """
    n_steps = log_ratios.shape[0]
    summed = log_ratios.cumsum(dim=0)
    before = summed - log_ratios  # exclusive cumulative sum: sum_{t' < t}
    steps = th.arange(n_steps, device=log_ratios.device).unsqueeze(1).expand_as(log_ratios)
    # Index of the last episode start at or before t (0 when none: the batch start).
    last_start = th.where(episode_starts.bool(), steps, th.zeros_like(steps)).cummax(dim=0).values
    return summed - before.gather(0, last_start)


def value_loss(returns: th.Tensor, values: th.Tensor, old_values: th.Tensor, clip_range_vf: float | None = None) -> th.Tensor:
    """Mean squared error of the critic, with PPO's optional clipping of the change in value.

    :param returns: regression targets, shape ``[N]``
    :param values: current predictions, shape ``[N]``
    :param old_values: predictions when the rollout was collected, shape ``[N]``
    :param clip_range_vf: keep predictions within ``old_values +- clip_range_vf`` (None: no clipping)
    :return: loss, shape ``[]``
    """
    if clip_range_vf is not None:
        values = old_values + th.clamp(values - old_values, -clip_range_vf, clip_range_vf)
    return F.mse_loss(returns, values)


def minibatch_weight_figures(log_weights: Sequence[th.Tensor], epsilon: float) -> dict[str, th.Tensor]:
    """The figures of each minibatch's log importance weights, all minibatches in one go.

    Minibatches of one size are stacked and go through each diagnostic in one call (an epoch's
    last minibatch may be shorter and gets its own), instead of half a dozen small ops per step.

    :param log_weights: ``M`` tensors of log-weights, shape ``[B_m]`` each, in step order
    :param epsilon: trust-region half-width of the clip fraction
    :return: ``ess`` (normalised), ``clip_fraction``, ``approx_kl`` (k3) and ``max_log_weight``
        of each minibatch, shape ``[M]`` each
    """
    runs: list[list[th.Tensor]] = []  # consecutive minibatches of one size
    for weights in log_weights:
        if runs and runs[-1][0].shape == weights.shape:
            runs[-1].append(weights)
        else:
            runs.append([weights])
    stacked = [th.stack(run) for run in runs]  # [M_run, B] each
    figures = {
        "ess": normalized_ess,
        "clip_fraction": lambda rows: clip_fraction(rows, epsilon),
        "approx_kl": kl_k3,
        "max_log_weight": lambda rows: rows.max(dim=-1).values,
    }
    return {key: th.cat([figure(rows) for rows in stacked]) for key, figure in figures.items()}


def index_distribution(distribution: Distribution, indices: th.Tensor) -> Distribution:
    """The rows ``indices`` of a batched SB3 distribution, as a new distribution of the same kind.

    :param distribution: SB3 distribution over a batch of ``N`` observations (kinds: see :func:`map_distribution`)
    :param indices: long tensor of positions, shape ``[B]``
    :return: distribution over the ``B`` selected observations
    """
    return map_distribution(distribution, lambda tensor: tensor[indices])


# ----------------------------------------------------------------------------- the core


class SurrogateAlgorithm(PGAlgorithm):
    """
    Base of the importance-sampled family (not an algorithm by itself).

    Each call of ``train()``:

    1. snapshots the behaviour policy's distribution on the whole batch, in buffer order and
       in eval mode (as the rollout was collected; the epochs run in training mode):
       the KL penalties slice it per minibatch (:meth:`old_distribution`, no extra forward
       pass) and the post-update diagnostics compare the updated policy with it;
    2. runs up to ``n_epochs`` epochs, each a pass over shuffled minibatches of
       ``batch_size`` (None: the whole batch), at most ``max_sgd_steps`` steps in all;
       each step minimises ``-(surrogate - penalty) + ent_coef * entropy_loss
       + vf_coef * value_loss`` on all the policy's parameters, gradient norm clipped to
       ``max_grad_norm``; ``after_epoch`` can stop the epochs early;
    3. logs ``trust_region/ess``, ``trust_region/clip_fraction``, ``trust_region/kl``,
       ``trust_region/max_ratio``, ... measured on the whole batch after the update (the figures
       the monitor callbacks log under the same keys), then calls ``after_update`` with them.

    Figures of the epochs: ``train/clip_fraction`` and ``train/approx_kl`` with PPO's meaning,
    the mean over all minibatch steps of ``mean(|w - 1| > epsilon)`` and of the k3 estimate
    ``mean((w - 1) - log w)`` of each step's weights before it (epsilon: the clip range where
    the algorithm has one, else ``diagnostics_epsilon``); ``train/epoch_ess`` (mean normalised
    ESS of the minibatch weights in the last epoch run), ``train/epoch_max_ratio`` (largest
    weight any step used) and ``train/epochs`` (epochs run).

    Takes the arguments of :class:`~sb3_pgx.common.base.PGAlgorithm` (``base_arguments``) plus:

    :param batch_size: Minibatch size, at most ``n_steps * n_envs`` (None: full-batch steps)
    :param n_epochs: Maximum number of passes over the batch
    :param clip_range_vf: Clipping of the value function's change, as in PPO (None: no clipping);
        it can be a function of the current progress remaining (from 1 to 0)
    :param max_sgd_steps: Cap on the number of gradient steps per batch (None: no cap)
    """

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        batch_size: int | None,
        n_epochs: int,
        clip_range_vf: float | Schedule | None,
        max_sgd_steps: int | None = None,
        **base_arguments: Any,
    ):
        if batch_size is not None:
            check_int("batch_size", batch_size, 1)
        check_int("n_epochs", n_epochs, 1)
        if clip_range_vf is not None:
            check_schedule("clip_range_vf", clip_range_vf)
        if max_sgd_steps is not None:
            check_int("max_sgd_steps", max_sgd_steps, 1)
        super().__init__(policy, env, **base_arguments)
        if self.env is not None:  # without one (``load`` attaches it later) n_envs is unknown yet
            check_batch_size(batch_size, self.n_steps, self.n_envs)
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range_vf = clip_range_vf
        self.max_sgd_steps = max_sgd_steps
        # Per-update scratch (not saved): the whole batch in buffer order and its behaviour data.
        self._ordered_batch: RolloutBufferSamples | None = None
        self._behaviour: BehaviourBatch | None = None

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_ordered_batch", "_behaviour"]

    # ----------------------------------------------------------------- hooks
    def begin_update(self) -> None:
        """Called once per batch before the epochs, after the buffer was flattened."""

    def log_weights(self, samples: RolloutBufferSamples, log_prob: th.Tensor, indices: th.Tensor) -> th.Tensor:
        """Log importance weights of the minibatch, shape ``[B]`` (default: per step).

        :param samples: the minibatch
        :param log_prob: current log-probabilities of its actions (with gradient), ``[B]``
        :param indices: positions of the minibatch in the flattened buffer (``env * n_steps + t``),
            a long tensor ``[B]`` on the device, for weights that need the whole time-ordered batch
        """
        return log_prob - samples.old_log_prob

    def surrogate(self, log_weights: th.Tensor, advantages: th.Tensor) -> th.Tensor:
        """The importance-sampled surrogate ``mean(w * A)`` (to be maximised), shape ``[]``."""
        return (th.exp(log_weights) * advantages).mean()

    def penalty(self, indices: th.Tensor, distribution: Distribution, log_weights: th.Tensor) -> th.Tensor:
        """Penalty subtracted from the surrogate (default: none), shape ``[]``.

        :param indices: positions of the minibatch in the flattened buffer (for :meth:`old_distribution`)
        :param distribution: the current policy's distribution on its observations (with gradient)
        :param log_weights: as returned by :meth:`log_weights`
        """
        return th.zeros((), device=self.device)

    def after_epoch(self, epoch: int, epoch_stats: dict[str, float]) -> bool:
        """Called after each epoch (``epoch`` counts from 1); return False to stop the epochs.

        :param epoch_stats: ``ess``, the mean normalised ESS of the epoch's minibatch weights
        """
        return True

    def after_update(self, stats: dict[str, float]) -> None:
        """Called once per batch after the epochs with the whole-batch diagnostics
        (``ess``, ``kl``, ``approx_kl``, ``clip_fraction``, ``max_ratio``, ...)."""

    # ----------------------------------------------------------------- helpers
    def old_distribution(self, indices: th.Tensor) -> Distribution:
        """The behaviour policy's action distribution on the minibatch at ``indices`` (no gradient).

        Sliced from the snapshot of the whole batch taken before the epochs, so an exact KL
        costs no extra forward pass per step.
        """
        assert self._behaviour is not None and self._behaviour.old_distribution is not None, "only during train()"
        return index_distribution(self._behaviour.old_distribution, indices)

    # ----------------------------------------------------------------- the loop
    @without_distribution_checks
    def train(self) -> None:
        """Epochs of SGD on the penalised surrogate, then the post-update diagnostics."""
        self.start_update()
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        epsilon = trust_region_epsilon(self)

        batch = self._ordered_batch = self.ordered_batch()
        # Snapshotted in eval mode, as the rollout's log-probabilities were (see behaviour_batch).
        self._behaviour = behaviour = self.behaviour_batch(batch)
        self.begin_update()

        parameters = self.policy_parameters()
        # Figures stay tensors, read once at the end (record_common): the only host read of a
        # step is its guard's, which at an epoch's last step also brings the epoch's ESS back.
        logs: dict[str, list[th.Tensor]] = {key: [] for key in ("surrogate", "penalty", "value_loss", "entropy_loss", "loss")}
        weight_figures: list[dict[str, th.Tensor]] = []  # one entry per epoch run, one row per step in each
        epochs_run, epoch_ess = 0, 1.0
        for epoch in range(1, self.n_epochs + 1):
            minibatches = self.shuffled_minibatches(len(batch.old_log_prob), self.batch_size)
            if self.max_sgd_steps is not None:
                minibatches = minibatches[: self.max_sgd_steps - self._update_sgd_steps]
            if not minibatches:  # the step cap was reached before this epoch
                break
            epoch_log_weights: list[th.Tensor] = []
            for indices in minibatches:
                samples = index_samples(batch, indices)
                distribution, values = self.evaluate(samples.observations)
                log_prob = distribution.log_prob(action_tensor(samples.actions, self.action_space))
                log_w = self.log_weights(samples, log_prob, indices)

                # Weights beyond float32's reach are truncated in the loss only (see MAX_LOG_WEIGHT).
                surrogate = self.surrogate(bounded_log_weights(log_w), self.normalize(samples.advantages))
                penalty = self.penalty(indices, distribution, log_w)
                v_loss = value_loss(samples.returns, values, samples.old_values, clip_range_vf)
                entropy_loss = policy_entropy_loss(distribution, log_prob)
                loss = -(surrogate - penalty) + self.ent_coef * entropy_loss + self.vf_coef * v_loss

                epoch_log_weights.append(log_w.detach())
                for key, value in zip(logs, (surrogate, penalty, v_loss, entropy_loss, loss), strict=True):
                    logs[key].append(value.detach())
                fetch = []
                if len(epoch_log_weights) == len(minibatches):
                    # The figures of the weights each step of the epoch used (PPO's: before its step),
                    # computed together; the epoch's ESS is read with this last step's guard.
                    weight_figures.append(minibatch_weight_figures(epoch_log_weights, epsilon))
                    fetch = [weight_figures[-1]["ess"].mean()]
                # One guard per step, log-weights first so that a bad weight is named as such.
                check = dict(log_weights=log_w, surrogate=surrogate, penalty=penalty, value_loss=v_loss)
                fetched = self.optimizer_step(loss, parameters, check=dict(check, entropy_loss=entropy_loss), fetch=fetch)
            epochs_run, epoch_ess = epoch, fetched[0]
            if not self.after_epoch(epoch, {"ess": epoch_ess}):
                break

        self._n_updates += 1
        stats = self.record_update_stats(behaviour)
        self.after_update(stats)
        self._ordered_batch = self._behaviour = None
        means = {key: th.stack(values).mean() for key, values in logs.items()}
        steps = {key: th.cat([epoch_figures[key] for epoch_figures in weight_figures]) for key in weight_figures[0]}
        self.record_common(
            **means,
            policy_gradient_loss=-means["surrogate"],
            clip_fraction=steps["clip_fraction"].mean(),
            approx_kl=steps["approx_kl"].mean(),
            epochs=epochs_run,
            epoch_ess=epoch_ess,
            # float32's range: a larger ratio is logged as e^88 (about 1.7e38)
            epoch_max_ratio=th.exp(th.clamp(steps["max_log_weight"].max(), max=88.0)),
        )
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
