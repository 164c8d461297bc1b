import math
from typing import Unpack

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_pgx.common.base import AlgorithmArguments, base_arguments
from sb3_pgx.common.surrogate import SurrogateAlgorithm
from sb3_pgx.common.update_stats import exact_kl
from sb3_pgx.common.validation import check_int, check_range


def mdpo_step_size(iteration: int, n_iterations: int, min_step_size: float) -> float:
    """MDPO's annealed step size ``t_k = max(1 - k / K, t_min)``.

    :param iteration: k, the number of iterations (batches) already trained on, from 0
    :param n_iterations: K, the planned number of iterations (>= 1)
    :param min_step_size: t_min > 0, the floor that keeps ``1 / t_k`` finite
    :return: t_k in ``[t_min, 1]``
    """
    return max(1.0 - iteration / n_iterations, min_step_size)


class MDPO(SurrogateAlgorithm):
    """
    On-policy Mirror Descent Policy Optimization (Tomar et al. 2020).

    At iteration k, ``n_sgd_steps`` gradient steps (minibatches of 64 by default), or
    ``n_epochs`` passes of minibatches as in PPO, on
    ``-(mean(w * A) - KL(pi_new || pi_old) / t_k)``. Note the direction: the KL is taken from
    the NEW policy to the old one (the Bregman divergence of mirror descent), unlike the PPO
    penalty. The step size ``t_k = max(1 - k / K, min_step_size)`` anneals from 1
    towards the floor over the K planned iterations, so the proximity term tightens as
    training proceeds.

    Schedule position: ``k`` is the attribute ``_mdpo_iteration`` (iterations trained on),
    saved and loaded with the model. ``K = ceil(total / (n_steps * n_envs))`` where
    ``total`` is SB3's planned total of timesteps for the current ``learn`` call, i.e. the
    same quantity SB3's learning-rate schedules use: ``learn(..., reset_num_timesteps=False)``
    keeps k and counts the new timesteps on top of those already done (so ``K`` grows and
    ``t_k`` continues from where ``1 - k / K`` puts it, exactly like ``progress_remaining``);
    ``reset_num_timesteps=True`` starts the schedule again at k = 0.
    ``train/step_size`` logs t_k, ``train/mdpo_iteration`` logs k.

    Paper: https://arxiv.org/abs/2005.09814

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (the batch is ``n_steps * n_envs``)
    :param batch_size: Minibatch size of the SGD steps, at most ``n_steps * n_envs`` (None:
        full-batch steps, as the authors' code)
    :param n_sgd_steps: Number of gradient steps per iteration (m in the paper); with
        minibatches they run through successive shuffled passes of the batch. None (default)
        with ``n_epochs`` None: 320 steps, which with the other defaults (minibatches of 64,
        a batch of 2048) are PPO's 10 passes
    :param n_epochs: PPO's way to give the number of steps: passes over the batch per
        iteration, each ``ceil(n_steps * n_envs / batch_size)`` minibatch steps (one step
        with ``batch_size=None``). Give ``n_epochs`` or ``n_sgd_steps``, not both
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param min_step_size: Floor of the step size t_k, in (0, 1]
    :param clip_range_vf: Clipping of the value function's change, as in PPO (None: no clipping)
    :param normalize_advantage: Whether to normalize the advantages of each minibatch
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param diagnostics_epsilon: Trust-region half-width for the logged ``trust_region/clip_fraction``
        (after the update, whole batch) and ``train/clip_fraction`` (PPO's: minibatch average during the epochs)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        (-1: only at the beginning of the rollout)
    :param kwargs: SB3's common arguments (``policy_kwargs``, ``seed``, ``device``, ...) and the rollout
        workers' (``n_workers``, ...): :class:`~sb3_pgx.common.base.AlgorithmArguments`
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int | None = 64,
        n_sgd_steps: int | None = None,
        n_epochs: int | None = None,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        min_step_size: float = 0.05,
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
        if n_sgd_steps is not None and n_epochs is not None:
            raise ValueError(
                f"n_sgd_steps={n_sgd_steps!r} and n_epochs={n_epochs!r} is not allowed: "
                "give one of them (gradient steps, or passes over the batch as in PPO)"
            )
        if n_sgd_steps is not None:
            check_int("n_sgd_steps", n_sgd_steps, 1)
        if n_epochs is not None:
            check_int("n_epochs", n_epochs, 1)
        elif n_sgd_steps is None:
            n_sgd_steps = 320  # neither given: PPO's 10 passes of 64 over 2048 with the other defaults
        check_range("min_step_size", min_step_size, 0.0, 1.0, low_open=True)
        arguments = base_arguments(locals())
        # With n_sgd_steps: enough passes for that many steps whatever the minibatch size;
        # the cap (max_sgd_steps) stops them.
        arguments["n_epochs"] = n_epochs if n_epochs is not None else n_sgd_steps
        super().__init__(**arguments, max_sgd_steps=n_sgd_steps)
        # None when the steps are given as n_epochs (self.n_epochs, saved with the model).
        self.n_sgd_steps = n_sgd_steps
        self.min_step_size = min_step_size
        self._mdpo_iteration = 0
        self._step_size = 1.0
        if _init_setup_model:
            self._setup_model()

    # ----------------------------------------------------------------- schedule
    def planned_iterations(self) -> int:
        """K: iterations in SB3's planned total of timesteps (at least 1)."""
        return max(1, math.ceil(self._total_timesteps / (self.n_steps * self.n_envs)))

    def step_size(self) -> float:
        """t_k for the current iteration."""
        return mdpo_step_size(self._mdpo_iteration, self.planned_iterations(), self.min_step_size)

    def begin_learn(self, reset_num_timesteps: bool) -> None:
        if reset_num_timesteps:  # a fresh run: t_k's schedule starts again
            self._mdpo_iteration = 0

    # ----------------------------------------------------------------- hooks
    def begin_update(self) -> None:
        self._step_size = self.step_size()

    def penalty(self, indices: th.Tensor, distribution: Distribution, log_weights: th.Tensor) -> th.Tensor:
        # KL(pi_new || pi_old) / t_k: new first (mirror descent's Bregman term), not PPO's direction.
        return exact_kl(distribution, self.old_distribution(indices)).mean() / self._step_size

    def after_update(self, stats: dict[str, float]) -> None:
        self.logger.record("train/step_size", self._step_size)
        self._mdpo_iteration += 1
        self.logger.record("train/mdpo_iteration", self._mdpo_iteration)
