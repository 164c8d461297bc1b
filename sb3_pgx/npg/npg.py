import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Unpack

import torch as th
from sb3_contrib.common.utils import conjugate_gradient_solver, flat_grad
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, RolloutBufferSamples, Schedule
from torch import nn

from sb3_pgx.common.base import (
    AlgorithmArguments,
    PGAlgorithm,
    base_arguments,
    bounded_log_weights,
    map_observations,
    without_distribution_checks,
)
from sb3_pgx.common.natural import fisher_vector_product, kl_gradient, natural_step_size
from sb3_pgx.common.update_stats import action_tensor, exact_kl, map_distribution, update_log_weights
from sb3_pgx.common.validation import check_int, check_range


class NaturalPG(PGAlgorithm):
    """
    Natural policy gradient (Kakade, 2001; Peters & Schaal, 2008): TRPO's step without its line search.

    For each batch: the gradient ``g`` of the surrogate ``L(theta) = mean(w * A)`` at
    theta_old; the Fisher ``F`` = Hessian of the mean exact ``KL(pi_old || pi_theta)``, used
    only through Fisher-vector products (double back-prop, with damping); the natural
    direction ``x = F^-1 g`` by conjugate gradient; then ONE step
    ``theta <- theta + sqrt(2 * target_kl / (x^T F x)) * x`` on the actor's parameters, which
    puts the step on the KL radius ``target_kl`` under the quadratic model of the KL. The
    critic is fitted afterwards by its own regression passes. A degenerate direction
    (``x^T F x <= 0`` or not finite) skips the policy step with a warning.

    Papers: https://papers.nips.cc/paper/2073-a-natural-policy-gradient ,
    https://doi.org/10.1016/j.neucom.2007.11.026

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the critic's regression (the policy step is sized
        by ``target_kl``), it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (the batch is ``n_steps * n_envs``)
    :param batch_size: Minibatch size of the critic regression (None: whole batch)
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param cg_max_steps: Maximum number of conjugate-gradient iterations (Fisher-vector products)
    :param cg_damping: Damping ``lambda >= 0``: CG solves ``(F + lambda I) x = g``
    :param target_kl: KL radius delta of each policy step (> 0)
    :param sub_sampling_factor: Use every k-th sample of the batch for the Fisher-vector
        products (the gradient ``g`` always uses the whole batch); see p. 40-42 of
        John Schulman's thesis http://joschu.net/docs/thesis.pdf
    :param n_critic_updates: Number of regression passes over the batch for the critic
    :param vf_coef: Scale of the critic's regression loss
    :param max_grad_norm: Gradient-norm clip of the critic's regression steps
    :param normalize_advantage: Whether to normalise the advantages of each batch
    :param diagnostics_epsilon: Trust-region half-width for the logged ``trust_region/clip_fraction``
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
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 1024,
        batch_size: int | None = 256,
        gamma: float = 0.99,
        gae_lambda: float = 0.98,
        cg_max_steps: int = 15,
        cg_damping: float = 0.01,
        target_kl: float = 0.01,
        sub_sampling_factor: int = 1,
        n_critic_updates: int = 20,
        vf_coef: float = 1.0,
        max_grad_norm: float = 10.0,
        normalize_advantage: bool = True,
        diagnostics_epsilon: float = 0.2,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        _init_setup_model: bool = True,
        **kwargs: Unpack[AlgorithmArguments],
    ):
        check_range("target_kl", target_kl, low=0.0, low_open=True)
        check_int("cg_max_steps", cg_max_steps, 1)
        check_range("cg_damping", cg_damping, low=0.0)
        check_int("sub_sampling_factor", sub_sampling_factor, 1)
        check_int("n_critic_updates", n_critic_updates, 1)
        if batch_size is not None:
            check_int("batch_size", batch_size, 1)
        # The natural step has no entropy bonus.
        super().__init__(**base_arguments(locals()), ent_coef=0.0)
        self.batch_size = batch_size
        self.cg_max_steps = cg_max_steps
        self.cg_damping = cg_damping
        self.target_kl = target_kl
        self.sub_sampling_factor = sub_sampling_factor
        self.n_critic_updates = n_critic_updates
        if _init_setup_model:
            self._setup_model()

    # ----------------------------------------------------------------- policy step
    def surrogate_and_fisher(
        self, samples: RolloutBufferSamples, advantages: th.Tensor, distribution: Distribution | None = None
    ) -> tuple[list[nn.Parameter], th.Tensor, Callable[..., th.Tensor]]:
        """The policy gradient and the (damped) Fisher-vector product at the current weights.

        :param samples: the whole rollout
        :param advantages: ``[N]`` advantages of ``samples`` (normalised if asked)
        :param distribution: the policy's training-mode distribution on ``samples`` at the current
            weights, with gradient, if the caller has it (None: a pass is made here)
        :return: ``(params, g, fvp)``: the actor parameters that move the action distribution,
            ``g = grad mean(w * A)`` flattened over them (``[D]``), and ``fvp(v) = (F + damping I) v``
        """
        # Surrogate L(theta) = mean(w * A) with w = pi_theta / pi_old; its gradient at theta_old
        # is the policy gradient mean(grad log pi * A). A training-mode pass, as every gradient pass.
        actions = action_tensor(samples.actions, self.action_space)
        if distribution is None:
            distribution = self.policy.get_distribution(samples.observations)
        log_prob = distribution.log_prob(actions)
        surrogate = (th.exp(bounded_log_weights(log_prob - samples.old_log_prob)) * advantages).mean()

        # Fisher = Hessian at theta_old of mean KL(pi_old || pi_theta), possibly on a sub-sample.
        # pi_old is the same training-mode pass, detached: the KL is 0 and minimal at theta_old,
        # as a Fisher needs (a separate snapshot pass would draw other Dropout masks). Without
        # sub-sampling that pass is the gradient's; with it, a pass on the sub-sample alone, so
        # that the Fisher-vector products back-propagate through the sub-sample only.
        if self.sub_sampling_factor > 1:
            distribution = self.policy.get_distribution(
                map_observations(lambda x: x[:: self.sub_sampling_factor], samples.observations)
            )
        mean_kl = exact_kl(map_distribution(distribution, th.Tensor.detach), distribution).mean()

        actor, _ = self.actor_critic_parameters()
        params, grad_kl = kl_gradient(mean_kl, actor)
        # The KL's graph may share the surrogate's forward pass: keep it for the Fisher products.
        gradient = flat_grad(surrogate, params, retain_graph=True)
        if gradient.numel() != grad_kl.numel():
            raise RuntimeError("Some actor parameters move the KL but not the surrogate; cannot align the gradients.")
        return params, gradient, partial(fisher_vector_product, grad_kl, params, damping=self.cg_damping)

    def natural_step(
        self, samples: RolloutBufferSamples, advantages: th.Tensor, distribution: Distribution | None = None
    ) -> dict[str, float]:
        """Compute ``x = F^-1 g`` by conjugate gradient and apply the KL-radius step to the actor.

        Host reads: one for the non-finite guard of the gradient (a NaN surrogate shows in it)
        with its norm, one for the solution's residual and curvature, and those of sb3-contrib's
        ``conjugate_gradient_solver`` (its residual test, once per iteration, as in TRPO).

        :param samples: the whole rollout
        :param advantages: ``[N]`` advantages of ``samples`` (normalised if asked)
        :param distribution: see :meth:`surrogate_and_fisher`
        :return: what to log; ``skipped_update`` is 1.0 when the direction was degenerate
            and the weights were left unchanged
        """
        params, gradient, fvp = self.surrogate_and_fisher(samples, advantages, distribution)
        (gradient_norm,) = self.check_finite([gradient.norm()], policy_gradient=gradient)
        logs = {"policy_gradient_norm": gradient_norm, "skipped_update": 1.0}
        if gradient_norm == 0.0:
            # Nothing to follow: CG would return its random start and the step would be noise.
            self._warn_skip("the policy gradient is zero")
            return logs

        direction = conjugate_gradient_solver(fvp, gradient, max_iter=self.cg_max_steps)
        damped_product = fvp(direction, retain_graph=False)
        with th.no_grad():
            residual = (damped_product - gradient).norm() / gradient_norm
            # x^T F x of the undamped Fisher: the curvature of the KL itself, so that the step
            # lands on the KL radius (damping only regularises the solve).
            quadratic_form = direction @ damped_product - self.cg_damping * direction @ direction
            finite = th.isfinite(direction).all()
            residual, quadratic_form, finite = th.stack([residual, quadratic_form, finite.to(residual.dtype)]).tolist()
        logs["cg_residual"] = residual
        logs["fisher_quadratic_form"] = quadratic_form

        step_size = natural_step_size(self.target_kl, quadratic_form)
        if math.isnan(step_size) or not finite:
            self._warn_skip(f"x^T F x = {quadratic_form!r} is not a positive finite number")
            return logs

        with th.no_grad():
            step = step_size * direction
            offset = 0
            for param in params:
                param.add_(step[offset : offset + param.numel()].view_as(param))
                offset += param.numel()
        self._update_sgd_steps += 1  # the natural step counts as one of the update's gradient steps
        logs["natural_step_size"] = step_size
        logs["skipped_update"] = 0.0
        return logs

    def _warn_skip(self, reason: str) -> None:
        warnings.warn(
            f"{self.__class__.__name__}: degenerate natural-gradient step at update {self._n_updates + 1} "
            f"({reason}); the policy update was skipped and the actor's weights are unchanged.",
            RuntimeWarning,
            stacklevel=3,
        )

    @without_distribution_checks
    def train(self) -> None:
        """One natural-gradient step of the actor on the whole batch, then the critic's regression passes."""
        self.start_update()

        samples = self.whole_batch()
        advantages = self.normalize(samples.advantages)
        # The behaviour snapshot and the gradient's training-mode pass: one pass where the
        # policy's forward does not depend on its mode.
        behaviour, distribution = self.behaviour_and_gradient_pass(samples)
        logs = self.natural_step(samples, advantages, distribution)
        # One eval-mode pass after the step, on the whole batch: the trust-region figures (exact KL,
        # ESS, clip fraction, ...) and the surrogate the step reached (0 at theta_old).
        log_weights, kl = update_log_weights(self.policy, behaviour)
        self.record_update_stats(behaviour, log_weights, kl)
        policy_objective = (th.exp(bounded_log_weights(log_weights)) * advantages).mean()

        value_loss = self.fit_critic(self.n_critic_updates, self.batch_size)
        self._n_updates += 1

        self.record_common(**logs, policy_objective=policy_objective, value_loss=value_loss)
