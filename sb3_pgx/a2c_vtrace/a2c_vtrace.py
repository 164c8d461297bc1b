import math
from collections import deque
from typing import Any, ClassVar, Unpack

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from torch.nn import functional as F

from sb3_pgx.common.base import (
    AlgorithmArguments,
    PGAlgorithm,
    base_arguments,
    policy_entropy_loss,
    without_distribution_checks,
)
from sb3_pgx.common.diagnostics import normalized_ess
from sb3_pgx.common.rollout import Rollout, cat_observations
from sb3_pgx.common.update_stats import BehaviourBatch
from sb3_pgx.common.validation import check_choice, check_int, check_range
from sb3_pgx.common.vtrace import VTraceReturns, vtrace


def _check_clip(name: str, value: Any) -> None:
    """A truncation level: a number > 0, ``math.inf`` allowed (no truncation)."""
    if isinstance(value, float) and value == math.inf:
        return
    check_range(name, value, low=0.0, low_open=True)


class VTraceA2C(PGAlgorithm):
    """
    A2C with IMPALA's V-trace off-policy corrections, batch reuse and rollout replay.

    After each rollout, for ``n_epochs`` epochs, the rollout (and the ``replay_rollouts``
    previous ones) is split into minibatches of env columns, each kept in time order. For
    each minibatch the CURRENT policy and value function give ``log pi(a_t|x_t)``, ``V(x_t)``
    and the bootstrap value ``V(x_T)`` (in eval mode, as the rollout was collected); V-trace
    (:func:`sb3_pgx.vtrace`) turns them, with the behaviour log-probabilities
    ``log mu(a_t|x_t)`` recorded when the rollout was collected, into value targets ``v_s``
    and advantages ``A_s``; then ONE gradient step (in training mode) on
    ``-mean(A_s log pi(a_s|x_s)) + vf_coef * mean((v_s - V(x_s))^2) - ent_coef * entropy``.

    Passes per gradient step: one. The new rollout's first step (before any step of the update, the
    networks are the behaviour policy: all weights 1) takes the GAE(lambda) advantages and TD(lambda)
    returns SB3's buffer computed at collection, which are V-trace's targets there when every
    truncation level is at least 1 (the defaults; below 1 it runs V-trace like the others); the later steps
    take V-trace's inputs from their gradient pass (the bootstrap observations ride along), unless
    the policy's forward depends on its mode (Dropout, BatchNorm, ...: ``mode_dependent``), which
    costs them an eval-mode pass of their own. The post-update figures cost one pass per update.

    With ``n_epochs=1``, ``replay_rollouts=0`` and one minibatch the weights are 1, V-trace
    gives GAE(lambda) advantages and TD(lambda) returns, and the update is SB3's A2C at any
    ``gae_lambda`` (the advantage bootstraps on rlax's ``lambda v_{s+1} + (1 - lambda) V(x_{s+1})``,
    see :func:`sb3_pgx.vtrace`).
    Once a batch is reused or replayed, the policy that acted differs from the current one and
    V-trace corrects for it (truncated importance weights). ``correction="none"`` keeps the
    reuse but drops the correction (all weights 1: plain n-step returns), for ablations.

    The one algorithm of the suite that takes asynchronous rollout workers (``n_workers > 0,
    asynchronous=True``, IMPALA's actor-learner layout, see :mod:`sb3_pgx.common.workers`): each
    update trains on one worker's rollout, collected by a policy :attr:`rollout_policy_lag` updates
    behind, and V-trace corrects it against the log-probabilities the worker recorded (the
    buffer's targets are taken for the first step only when that lag is 0).

    Replay memory (``replay_rollouts = K``): the last K rollouts are kept in a bounded deque
    (``replay_store``) as float32 tensors: per transition the observation, the action
    (1 number for Discrete), reward, discount and behaviour log-probability, i.e.
    ``4 * (obs_dim + action_dim + 3)`` bytes, plus one bootstrap observation per env per
    rollout (``4 * obs_dim * n_envs`` bytes). CartPole-v1: 32 bytes per transition; with
    ``n_envs=8, n_steps=32, K=4``: about 33 KB. :attr:`replay_nbytes` reports the actual size.
    The replay store is NOT saved with the model (``save``/``load``): a loaded model starts
    with an empty store and refills it. Replayed observations are stored as collected (with a
    ``VecNormalize`` wrapper: normalised with the statistics of that time).

    Logged: under ``train/``, ``vtrace_rho_mean`` (mean truncated weight ``min(rho_bar, w)``
    the correction used) and ``rho_truncated_fraction`` (share of ``w > rho_bar``), averaged
    over the gradient steps, as are ``policy_loss``, ``value_loss`` and ``entropy_loss``;
    ``ess_replay_mean`` / ``ess_replay_min`` (normalised ESS of each replayed rollout's weights
    after the update); ``explained_variance`` as A2C logs it (collection-time values against
    the buffer's returns). Under ``trust_region/``, ``ess``, ``clip_fraction``, ``approx_kl``,
    ``kl_k1`` and ``max_ratio`` of the new rollout, measured after the update on all of it
    (the monitor callbacks' keys; no exact ``kl``, which would need a snapshot forward pass).

    Paper: https://arxiv.org/abs/1802.01561

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress
        remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (the rollout is ``n_steps * n_envs``; V-trace runs over the ``n_steps`` axis); 64 by
        default, where SB3's A2C has 5 (see docs/algorithms/a2c_vtrace.md); the other defaults are SB3 A2C's
    :param gamma: Discount factor
    :param gae_lambda: Trace decay lambda of V-trace, ``c_t = lambda * min(c_bar, w_t)``, also
        mixing the advantage's bootstrap ``lambda v_{s+1} + (1 - lambda) V(x_{s+1})`` (1.0: the
        paper's V-trace; the name is SB3's, and with all weights 1 the advantages are GAE(lambda)
        and the targets its TD(lambda) returns)
    :param n_epochs: Number of passes over the rollout (and the replayed rollouts)
    :param n_env_minibatches: Minibatches per rollout: each gradient step uses
        ``ceil(n_envs / n_env_minibatches)`` whole env columns (time order kept), so
        replayed rollouts add gradient steps rather than growing them; at most ``n_envs``
    :param replay_rollouts: Number K of previous rollouts kept and trained on again, each
        corrected against its own behaviour policy (0: no replay)
    :param rho_bar: Truncation of the importance weights in the value targets (``> 0``,
        ``math.inf``: none); the targets are those of the policy
        ``pi_rho ~ min(rho_bar mu, pi)``
    :param c_bar: Truncation of the trace coefficients, ``0 < c_bar <= rho_bar``
    :param pg_rho_bar: Truncation of the importance weight of the policy-gradient advantage
    :param correction: ``"vtrace"`` (default) or ``"none"`` (weights fixed to 1: plain
        reuse with n-step returns, for ablations)
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param rms_prop_eps: RMSProp epsilon. It stabilizes square root computation in denominator
        of RMSProp update
    :param use_rms_prop: Whether to use RMSprop (default, as A2C) or Adam as optimizer
    :param normalize_advantage: Whether to normalise the V-trace advantages of each minibatch
    :param diagnostics_epsilon: Trust-region half-width for the logged ``trust_region/clip_fraction``
    :param log_update_stats: Whether to evaluate the policy after each update on the new
        rollout and log ``trust_region/ess``, ``trust_region/clip_fraction``, ``trust_region/approx_kl``
        (k3), ``trust_region/kl_k1``, ``trust_region/max_ratio`` (and ``train/ess_replay_mean/min`` on
        the replayed rollouts). It costs one extra forward pass per update; ``False`` saves it (the V-trace
        figures ``train/vtrace_rho_mean`` and ``train/rho_truncated_fraction`` are always logged)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        (-1: only at the beginning of the rollout)
    :param kwargs: SB3's common arguments (``policy_kwargs``, ``seed``, ``device``, ...) and the rollout
        workers' (``n_workers``, ...): :class:`~sb3_pgx.common.base.AlgorithmArguments`
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    corrections: ClassVar[tuple[str, ...]] = ("vtrace", "none")
    corrects_policy_lag: ClassVar[bool] = True

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 64,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        n_epochs: int = 1,
        n_env_minibatches: int = 1,
        replay_rollouts: int = 0,
        rho_bar: float = 1.0,
        c_bar: float = 1.0,
        pg_rho_bar: float = 1.0,
        correction: str = "vtrace",
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rms_prop_eps: float = 1e-5,
        use_rms_prop: bool = True,
        normalize_advantage: bool = False,
        diagnostics_epsilon: float = 0.2,
        log_update_stats: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        _init_setup_model: bool = True,
        **kwargs: Unpack[AlgorithmArguments],
    ):
        check_int("n_epochs", n_epochs, 1)
        check_int("n_env_minibatches", n_env_minibatches, 1)
        check_int("replay_rollouts", replay_rollouts, 0)
        _check_clip("rho_bar", rho_bar)
        _check_clip("c_bar", c_bar)
        _check_clip("pg_rho_bar", pg_rho_bar)
        if c_bar > rho_bar:
            raise ValueError(f"rho_bar={rho_bar!r}, c_bar={c_bar!r} is not allowed: V-trace needs c_bar <= rho_bar")
        check_choice("correction", correction, self.corrections)
        check_range("rms_prop_eps", rms_prop_eps, low=0.0, low_open=True)
        super().__init__(**base_arguments(locals()))
        # Without an env (``load`` builds the model first, then attaches one) n_envs is unknown yet.
        if self.env is not None and n_env_minibatches > self.n_envs:
            raise ValueError(
                f"n_env_minibatches={n_env_minibatches!r} is not allowed: expected an integer in [1, n_envs={self.n_envs}]"
            )
        self.n_epochs = n_epochs
        self.n_env_minibatches = n_env_minibatches
        self.replay_rollouts = replay_rollouts
        self.rho_bar = rho_bar
        self.c_bar = c_bar
        self.pg_rho_bar = pg_rho_bar
        self.correction = correction
        self.rms_prop_eps = rms_prop_eps
        self.use_rms_prop = use_rms_prop
        self.log_update_stats = log_update_stats
        # RMSprop as in the original A2C, unless the user chose an optimizer.
        if use_rms_prop and "optimizer_class" not in self.policy_kwargs:
            self.policy_kwargs["optimizer_class"] = th.optim.RMSprop
            self.policy_kwargs["optimizer_kwargs"] = dict(alpha=0.99, eps=rms_prop_eps, weight_decay=0)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        # Bounded: the oldest rollout is dropped when a new one comes in. Not saved (see class doc).
        self.replay_store: deque[Rollout] = deque(maxlen=self.replay_rollouts)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "replay_store"]

    @property
    def replay_nbytes(self) -> int:
        """Bytes held by the replay store now."""
        return sum(rollout.nbytes for rollout in self.replay_store)

    # ----------------------------------------------------------------- data
    def rollout_from_buffer(self) -> Rollout:
        """The rollout just collected, copied out of the (still time-ordered) rollout buffer."""
        return Rollout.from_buffer(self.rollout_buffer, self._last_obs, self._last_episode_starts, self.gamma, self.device)

    def log_importance_weights(self, rollout: Rollout) -> th.Tensor:
        """``log pi_current(a|s) - log mu(a|s)`` on a rollout, ``[T, N]``, without gradient, in eval mode."""
        with self.eval_mode(), th.no_grad():
            distribution = self.policy.get_distribution(rollout.flat_observations())
            log_prob = distribution.log_prob(rollout.flat_actions(self.action_space))
        return log_prob.view(rollout.n_steps, rollout.n_envs) - rollout.behaviour_log_prob

    def vtrace_inputs(self, batch: Rollout) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """What V-trace takes from the current networks: log importance weights ``[T, N]``,
        values ``V(x_t)`` ``[T, N]`` and bootstrap values ``V(x_T)`` ``[N]``.

        Computed without gradient and in eval mode, as the behaviour log-probabilities were
        recorded (and as A2C's targets are): on-policy the weights are then exactly 1 whatever
        Dropout does in training mode, and BatchNorm runs on a bootstrap batch of one env.
        """
        with self.eval_mode(), th.no_grad():
            actions = batch.flat_actions(self.action_space)
            values, log_prob, _ = self.policy.evaluate_actions(batch.flat_observations(), actions)
            bootstrap_value = self.policy.predict_values(batch.bootstrap_observations).view(batch.n_envs)
        shape = (batch.n_steps, batch.n_envs)
        return log_prob.view(shape) - batch.behaviour_log_prob, values.view(shape), bootstrap_value

    # ----------------------------------------------------------------- update
    def _update(
        self, batch: Rollout, mode_dependent: bool, recorded: VTraceReturns | None, parameters: list[th.nn.Parameter]
    ) -> dict[str, th.Tensor]:
        """V-trace targets with the current networks, then one gradient step on ``batch``.

        The targets need the eval-mode policy (see :meth:`vtrace_inputs`); what that costs:

        - ``recorded`` targets (the new rollout before any step of this update): none. The networks
          are still the behaviour policy, all weights are 1, and V-trace is the GAE(lambda) SB3's
          buffer computed at collection, from the eval-mode values and bootstrap value it recorded;
        - a policy whose forward does not depend on its mode (no Dropout, BatchNorm, ...:
          :attr:`mode_dependent`): none either. The gradient's training-mode pass is the eval-mode
          policy; the bootstrap observations ride along in it, and its outputs, detached, are the
          targets' inputs;
        - otherwise: an eval-mode pass of their own.

        :param mode_dependent: whether the policy's forward depends on its mode
        :param recorded: the rollout's V-trace targets with all weights 1 (from the buffer), or None
        :param parameters: the policy's parameters
        :return: the step's figures, as tensors
        """
        n_steps, n_envs = batch.n_steps, batch.n_envs
        n_samples = n_steps * n_envs
        observations = batch.flat_observations()
        one_pass = recorded is None and not mode_dependent
        if one_pass:
            observations = cat_observations([observations, batch.bootstrap_observations])
        elif recorded is None:
            # Before the gradient pass, whose training-mode BatchNorm moves the running statistics.
            log_rhos, target_values, bootstrap_value = self.vtrace_inputs(batch)
        # The gradient pass, in training mode.
        distribution, values = self.evaluate(observations, actor_rows=n_samples)
        if one_pass:
            values, bootstrap_value = values[:n_samples], values[n_samples:].detach()
        values = values.view(n_steps, n_envs)
        log_prob = distribution.log_prob(batch.flat_actions(self.action_space)).view(n_steps, n_envs)
        if one_pass:
            log_rhos, target_values = log_prob.detach() - batch.behaviour_log_prob, values.detach()

        if recorded is not None:
            log_rhos, targets = None, recorded
        else:
            # correction="none": reuse the data as if it were on-policy (all weights 1).
            used_log_rhos = log_rhos if self.correction == "vtrace" else th.zeros_like(log_rhos)
            targets = vtrace(
                log_rhos=used_log_rhos,
                discounts=batch.discounts,
                rewards=batch.rewards,
                values=target_values,
                bootstrap_value=bootstrap_value,
                rho_bar=self.rho_bar,
                c_bar=self.c_bar,
                pg_rho_bar=self.pg_rho_bar,
                lambda_=self.gae_lambda,
            )
        advantages = self.normalize(targets.pg_advantages)

        policy_loss = -(advantages * log_prob).mean()
        value_loss = F.mse_loss(values, targets.vs)
        entropy_loss = policy_entropy_loss(distribution, log_prob)
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        check = dict(policy_loss=policy_loss, value_loss=value_loss, entropy_loss=entropy_loss)
        if log_rhos is not None:
            check = dict(log_importance_weights=log_rhos, **check)
        self.optimizer_step(loss, parameters, check=check)

        stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "entropy_loss": entropy_loss.detach()}
        # Diagnostics of the weights the correction saw (computed even when it is switched off);
        # with the buffer's targets all weights are 1: none truncated (every truncation level is >= 1).
        if log_rhos is None:
            one, zero = th.ones_like(stats["policy_loss"]), th.zeros_like(stats["policy_loss"])
            return {**stats, "vtrace_rho_mean": one, "rho_truncated_fraction": zero}
        log_rho_bar = math.log(self.rho_bar) if math.isfinite(self.rho_bar) else math.inf
        return {
            **stats,
            "vtrace_rho_mean": th.exp(th.clamp(log_rhos, max=log_rho_bar)).mean(),
            "rho_truncated_fraction": (log_rhos > log_rho_bar).float().mean(),
        }

    @without_distribution_checks
    def train(self) -> None:
        """``n_epochs`` passes of V-trace-corrected A2C steps over the new and the replayed rollouts."""
        self.start_update()
        mode_dependent = self.mode_dependent

        current = self.rollout_from_buffer()
        # Rollouts of another shape (after set_env with other n_envs) cannot be stacked: skip them.
        replayed = [r for r in self.replay_store if (r.n_steps, r.n_envs) == (current.n_steps, current.n_envs)]
        batch = Rollout.concat([current, *replayed])
        # The targets of a step on the new rollout before any step of this update: the networks are
        # still the behaviour policy's, all weights 1, and V-trace is the buffer's GAE(lambda) and
        # TD(lambda) returns. Not so with a truncation level below 1 (min(bar, 1) < 1 scales them).
        # Not so either for a rollout of asynchronous workers whose weights were older than the learner's.
        recorded = None
        if min(self.rho_bar, self.c_bar, self.pg_rho_bar) >= 1.0 and self.rollout_policy_lag == 0:
            arrays = (self.rollout_buffer.returns, self.rollout_buffer.advantages)
            recorded = VTraceReturns(*(th.as_tensor(array, device=self.device) for array in arrays))

        columns_per_step = math.ceil(current.n_envs / self.n_env_minibatches)
        parameters = self.policy_parameters()
        step_stats = []
        for _ in range(self.n_epochs):
            # The global NumPy generator, seeded by set_random_seed, as SB3's buffers use it.
            shuffle = batch.n_envs > columns_per_step
            order = np.random.permutation(batch.n_envs) if shuffle else np.arange(batch.n_envs)  # noqa: NPY002
            for start in range(0, batch.n_envs, columns_per_step):
                selected = order[start : start + columns_per_step]  # on the host: choosing the path needs no sync
                on_policy = self._update_sgd_steps == 0 and selected.max() < current.n_envs
                fresh = recorded if on_policy else None
                if shuffle:
                    columns = th.as_tensor(selected, device=self.device)
                    minibatch = batch.columns(columns)
                    fresh = None if fresh is None else VTraceReturns(*(target.index_select(1, columns) for target in fresh))
                else:  # the whole batch, in order
                    minibatch = batch
                step_stats.append(self._update(minibatch, mode_dependent, fresh, parameters))

        if self.replay_rollouts > 0:
            self.replay_store.append(current)

        self._n_updates += 1
        if self.log_update_stats:
            # One eval-mode pass over the new and the replayed rollouts, one transfer of its log-weights.
            log_weights = self.log_importance_weights(batch).cpu()
            # Against the new rollout's recorded log-probabilities (k3 KL: no snapshot pass needed).
            behaviour = BehaviourBatch(
                current.flat_observations(), current.flat_actions(self.action_space), current.behaviour_log_prob.flatten()
            )
            self.record_update_stats(behaviour, log_weights=log_weights[:, : current.n_envs].flatten())
            if replayed:
                ess = [
                    normalized_ess(log_weights[:, start : start + current.n_envs].flatten().double()).item()
                    for start in range(current.n_envs, batch.n_envs, current.n_envs)
                ]
                self.logger.record("train/ess_replay_mean", float(np.mean(ess)))
                self.logger.record("train/ess_replay_min", float(np.min(ess)))
        # Means over the gradient steps (no stacking for one), read with the other figures in record_common.
        means = step_stats[0]
        if len(step_stats) > 1:
            means = {key: th.stack([row[key] for row in step_stats]).mean() for key in means}
        self.record_common(**means)
        self.logger.record("train/replay_rollouts", len(replayed))
