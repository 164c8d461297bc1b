from typing import ClassVar, Unpack

import numpy as np
import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import FloatSchedule

from sb3_pgx.common.base import AlgorithmArguments, base_arguments
from sb3_pgx.common.surrogate import SurrogateAlgorithm
from sb3_pgx.common.update_stats import exact_kl
from sb3_pgx.common.validation import check_range, check_schedule


def adapt_kl_coef(
    kl_coef: float,
    kl: float,
    target: float,
    tolerance: float = 1.5,
    factor: float = 2.0,
    min_coef: float = 1e-8,
    max_coef: float = 1e8,
) -> float:
    """The adaptive-KL rule of the PPO paper (section 4), applied once per batch.

    ``kl < target / tolerance``: ``kl_coef / factor``; ``kl > target * tolerance``:
    ``kl_coef * factor``; otherwise unchanged. The result is clamped into
    ``[min_coef, max_coef]`` so that a long run of small (or large) KLs cannot drive the
    coefficient to 0 (or infinity), from where it could not come back.

    :param kl_coef: current coefficient beta
    :param kl: measured mean KL(pi_old || pi_new) of the batch, d
    :param target: target KL, d_targ
    :return: next coefficient
    """
    if kl < target / tolerance:
        kl_coef = kl_coef / factor
    elif kl > target * tolerance:
        kl_coef = kl_coef * factor
    return float(np.clip(kl_coef, min_coef, max_coef))


class AdaptiveKLPPO(SurrogateAlgorithm):
    """
    PPO with an adaptive KL penalty (Schulman et al. 2017, section 4).

    Epochs of minibatch SGD on ``-(mean(w * A) - beta * KL(pi_old || pi_new))``, the KL
    exact from SB3's distributions (the behaviour distribution comes from a frozen copy of
    the policy taken before the epochs). After the epochs, with ``d`` the exact mean KL of
    the whole batch: ``d < target_kl / kl_tolerance`` halves beta (divides by ``kl_factor``),
    ``d > target_kl * kl_tolerance`` doubles it. Optionally PPO's clipped surrogate on top
    (``clip_range``; off by default).

    beta is training state (the attribute ``kl_coef``): logged as ``train/kl_coef``, saved
    and loaded with the model, and never reset by ``learn`` (with or without
    ``reset_num_timesteps``).

    Paper: https://arxiv.org/abs/1707.06347

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (the batch is ``n_steps * n_envs``)
    :param batch_size: Minibatch size, at most ``n_steps * n_envs`` (None: full-batch steps)
    :param n_epochs: Number of epochs (passes over the batch) per update
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param kl_coef: Initial penalty coefficient beta
    :param target_kl: Target mean KL per batch, d_targ
    :param kl_tolerance: beta changes when the KL leaves ``[target_kl / kl_tolerance, target_kl * kl_tolerance]``
    :param kl_factor: Factor by which beta is multiplied or divided
    :param clip_range: PPO clipping of the surrogate on top of the penalty (None: off);
        it can be a function of the current progress remaining (from 1 to 0)
    :param clip_range_vf: Clipping of the value function's change, as in PPO (None: no clipping)
    :param normalize_advantage: Whether to normalize the advantages of each minibatch
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param diagnostics_epsilon: Trust-region half-width for the logged ``trust_region/clip_fraction``
        (after the update, whole batch) and ``train/clip_fraction`` (PPO's: minibatch average during the
        epochs) when ``clip_range`` is None; with a ``clip_range``, both use it, as PPO's does
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        (-1: only at the beginning of the rollout)
    :param kwargs: SB3's common arguments (``policy_kwargs``, ``seed``, ``device``, ...) and the rollout
        workers' (``n_workers``, ...): :class:`~sb3_pgx.common.base.AlgorithmArguments`
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    #: Range beta is kept in (see :func:`adapt_kl_coef`).
    kl_coef_bounds: ClassVar[tuple[float, float]] = (1e-8, 1e8)

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int | None = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        kl_coef: float = 1.0,
        target_kl: float = 0.01,
        kl_tolerance: float = 1.5,
        kl_factor: float = 2.0,
        clip_range: float | Schedule | None = None,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        diagnostics_epsilon: float = 0.2,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        _init_setup_model: bool = True,
        **kwargs: Unpack[AlgorithmArguments],
    ):
        check_range("kl_coef", kl_coef, *self.kl_coef_bounds)
        check_range("target_kl", target_kl, low=0.0, low_open=True)
        check_range("kl_tolerance", kl_tolerance, low=1.0, low_open=True)
        check_range("kl_factor", kl_factor, low=1.0, low_open=True)
        if clip_range is not None:
            check_schedule("clip_range", clip_range)
        super().__init__(**base_arguments(locals()))
        self.kl_coef = float(kl_coef)
        self.target_kl = target_kl
        self.kl_tolerance = kl_tolerance
        self.kl_factor = kl_factor
        self.clip_range = clip_range
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.clip_range is not None:
            self.clip_range = FloatSchedule(self.clip_range)

    def surrogate(self, log_weights: th.Tensor, advantages: th.Tensor) -> th.Tensor:
        ratio = th.exp(log_weights)
        if self.clip_range is None:
            return (ratio * advantages).mean()
        # PPO's pessimistic bound: the clipped term removes the incentive to leave [1-eps, 1+eps].
        clip_range = self.clip_range(self._current_progress_remaining)
        return th.min(ratio * advantages, th.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages).mean()

    def penalty(self, indices: th.Tensor, distribution: Distribution, log_weights: th.Tensor) -> th.Tensor:
        # beta * KL(pi_old || pi_new): old first, as in the PPO paper.
        return self.kl_coef * exact_kl(self.old_distribution(indices), distribution).mean()

    def after_update(self, stats: dict[str, float]) -> None:
        self.kl_coef = adapt_kl_coef(
            self.kl_coef, stats["kl"], self.target_kl, self.kl_tolerance, self.kl_factor, *self.kl_coef_bounds
        )
        self.logger.record("train/kl_coef", self.kl_coef)
        if self.clip_range is not None:
            self.logger.record("train/clip_range", self.clip_range(self._current_progress_remaining))
