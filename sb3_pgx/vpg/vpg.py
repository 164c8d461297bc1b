from typing import ClassVar, Unpack

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, RolloutBufferSamples, Schedule

from sb3_pgx.common.base import (
    AlgorithmArguments,
    PGAlgorithm,
    base_arguments,
    policy_entropy_loss,
    without_distribution_checks,
)
from sb3_pgx.common.validation import check_choice, check_int


class VanillaPG(PGAlgorithm):
    """
    Vanilla policy gradient: REINFORCE with reward-to-go and a baseline (Williams, 1992).

    For each batch: reward-to-go returns ``R_t = sum_{t' >= t} gamma^(t'-t) r_t'``
    (bootstrapped with the value function only where the rollout cuts an episode), advantages
    ``A_t = R_t - b(s_t)``, exactly ONE gradient step on ``-mean(log pi(a_t|s_t) A_t)``, then
    the critic is refitted by regression on ``R_t``.

    Paper: https://doi.org/10.1007/BF00992696

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the policy step and of the critic regression,
        it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (the batch is ``n_steps * n_envs``)
    :param batch_size: Minibatch size of the critic regression (None: whole batch)
    :param gamma: Discount factor
    :param gae_lambda: GAE lambda of the advantage; 1.0 (default) gives the reward-to-go
        Monte-Carlo return of REINFORCE, smaller values trade variance for bias
    :param baseline: ``"value"``: learned value function (default); ``"mean"``: the batch's
        mean return; ``"none"``: no baseline. The critic is fitted in every case, because
        returns are bootstrapped from it where the rollout or a time limit cuts an episode.
    :param n_critic_updates: Number of regression passes over the batch for the critic
    :param ent_coef: Entropy coefficient of the policy step
    :param vf_coef: Scale of the critic's regression loss
    :param max_grad_norm: The maximum norm of the gradient (clipped above it)
    :param normalize_advantage: Whether to normalise the advantages; with ``baseline="none"``
        they are only divided by their standard deviation, so that no baseline creeps in
    :param diagnostics_epsilon: Trust-region half-width for the logged ``trust_region/clip_fraction``
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        (-1: only at the beginning of the rollout)
    :param kwargs: SB3's common arguments (``policy_kwargs``, ``seed``, ``device``, ...) and the rollout
        workers' (``n_workers``, ...): :class:`~sb3_pgx.common.base.AlgorithmArguments`
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    baselines: ClassVar[tuple[str, ...]] = ("value", "mean", "none")

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-3,
        n_steps: int = 256,
        batch_size: int | None = 64,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        baseline: str = "value",
        n_critic_updates: int = 5,
        ent_coef: float = 0.0,
        vf_coef: float = 1.0,
        max_grad_norm: float = 0.5,
        normalize_advantage: bool = True,
        diagnostics_epsilon: float = 0.2,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        _init_setup_model: bool = True,
        **kwargs: Unpack[AlgorithmArguments],
    ):
        check_choice("baseline", baseline, self.baselines)
        check_int("n_critic_updates", n_critic_updates, 1)
        if batch_size is not None:
            check_int("batch_size", batch_size, 1)
        super().__init__(**base_arguments(locals()))
        self.batch_size = batch_size
        self.baseline = baseline
        self.n_critic_updates = n_critic_updates
        if _init_setup_model:
            self._setup_model()

    def advantages(self, samples: RolloutBufferSamples) -> th.Tensor:
        """``A = R - b`` for the chosen baseline, normalised if asked."""
        returns = samples.returns
        if self.baseline == "value":
            # The buffer's advantages are GAE(lambda); with lambda = 1 they are R - V(s).
            return self.normalize(samples.advantages)
        if self.baseline == "mean":
            return self.normalize(returns - returns.mean())
        # No baseline: scale only, centring would add the batch mean back as a baseline.
        if self.normalize_advantage and returns.numel() > 1:
            return returns / (returns.std() + 1e-8)
        return returns

    @without_distribution_checks
    def train(self) -> None:
        """One policy-gradient step on the whole batch, then the critic's regression passes."""
        self.start_update()

        samples = self.whole_batch()
        actor, critic = self.actor_critic_parameters()

        # The behaviour snapshot and the gradient's training-mode pass: one pass where the
        # policy's forward does not depend on its mode.
        behaviour, distribution = self.behaviour_and_gradient_pass(samples)
        log_prob = distribution.log_prob(behaviour.actions)

        # REINFORCE: the gradient of -mean(log pi(a|s) * A) is -mean(grad log pi(a|s) * A).
        policy_loss = -(log_prob * self.advantages(samples)).mean()
        entropy_loss = policy_entropy_loss(distribution, log_prob)
        loss = policy_loss + self.ent_coef * entropy_loss
        self.optimizer_step(loss, actor, frozen=critic, check=dict(policy_loss=policy_loss, entropy_loss=entropy_loss))

        value_loss = self.fit_critic(self.n_critic_updates, self.batch_size)
        self._n_updates += 1

        self.record_update_stats(behaviour)
        self.record_common(policy_loss=policy_loss, entropy_loss=entropy_loss, value_loss=value_loss)
