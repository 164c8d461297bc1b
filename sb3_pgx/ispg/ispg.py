import math
from typing import ClassVar, Unpack

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, RolloutBufferSamples, Schedule

from sb3_pgx.common.base import AlgorithmArguments, base_arguments
from sb3_pgx.common.surrogate import SurrogateAlgorithm, per_decision_log_weights
from sb3_pgx.common.update_stats import action_tensor
from sb3_pgx.common.validation import check_choice, check_range


class ImportanceSampledPG(SurrogateAlgorithm):
    """
    Importance-sampled policy gradient: sample reuse through importance weights (CS285, lecture 5).

    Several epochs of minibatch SGD on the plain surrogate ``-mean(w * A)``, with nothing
    but the optional weight truncation and ESS early stop to keep the policy near the data.

    - ``importance_weights="per_step"``: ``w_t = pi(a_t|s_t) / pi_old(a_t|s_t)``, the
      first-order approximation that ignores the change of state distribution;
    - ``importance_weights="per_decision"``: ``w_t = prod_{t0 <= t' <= t} pi(a_t'|s_t') / pi_old(a_t'|s_t')``
      with ``t0`` the episode start (or the rollout's first step if the episode began in an
      earlier rollout), computed on the time-ordered buffer. The exact off-policy estimator;
      its variance grows exponentially with ``t``, so pair it with ``max_weight``. Each
      gradient step evaluates the current policy on the whole batch (a weight depends on
      every earlier step of its episode, and the gradient flows through all of them), then
      takes the loss on the minibatch's entries: exact at the cost of one whole-batch
      forward/backward pass per step.
    - ``max_weight``: truncation ``min(w, max_weight)`` (no gradient through truncated weights).
    - ``min_ess``: stop the epochs once the mean normalised ESS of an epoch's minibatch
      weights falls below it; ``train/stopped_epoch`` logs the last epoch run (``n_epochs``
      when none stopped early). On by default (0.5), as nothing else bounds the update
      (docs/algorithms/ispg.md gives the runs behind that default).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (the batch is ``n_steps * n_envs``)
    :param batch_size: Minibatch size, at most ``n_steps * n_envs`` (None: full-batch steps)
    :param n_epochs: Number of epochs (passes over the batch) per update
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param importance_weights: ``"per_step"`` or ``"per_decision"`` (see above)
    :param max_weight: Truncation of the importance weights (None: no truncation)
    :param min_ess: Early stop threshold on the normalised ESS, in (0, 1] (None: never stop early)
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

    weightings: ClassVar[tuple[str, ...]] = ("per_step", "per_decision")

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
        importance_weights: str = "per_step",
        max_weight: float | None = None,
        min_ess: float | None = 0.5,
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
        check_choice("importance_weights", importance_weights, self.weightings)
        if max_weight is not None:
            check_range("max_weight", max_weight, low=0.0, low_open=True)
        if min_ess is not None:
            check_range("min_ess", min_ess, 0.0, 1.0, low_open=True)
        super().__init__(**base_arguments(locals()))
        self.importance_weights = importance_weights
        self.max_weight = max_weight
        self.min_ess = min_ess
        self._stopped_epoch = n_epochs
        if _init_setup_model:
            self._setup_model()

    def begin_update(self) -> None:
        self._stopped_epoch = self.n_epochs

    def log_weights(self, samples: RolloutBufferSamples, log_prob: th.Tensor, indices: th.Tensor) -> th.Tensor:
        if self.importance_weights == "per_step":
            return log_prob - samples.old_log_prob
        batch = self._ordered_batch  # the whole batch in buffer order: position env * n_steps + t
        distribution = self.policy.get_distribution(batch.observations)
        log_ratios = distribution.log_prob(action_tensor(batch.actions, self.action_space)) - batch.old_log_prob
        n_envs, n_steps = self.rollout_buffer.n_envs, self.rollout_buffer.buffer_size
        episode_starts = th.as_tensor(self.rollout_buffer.episode_starts, device=log_ratios.device)  # [T, N], never flattened
        log_w = per_decision_log_weights(log_ratios.view(n_envs, n_steps).T, episode_starts)
        return log_w.T.reshape(-1)[indices]

    def surrogate(self, log_weights: th.Tensor, advantages: th.Tensor) -> th.Tensor:
        if self.max_weight is not None:
            # min(w, w_max), done in log space so that a huge weight cannot overflow first.
            log_weights = th.clamp(log_weights, max=math.log(self.max_weight))
        return (th.exp(log_weights) * advantages).mean()

    def after_epoch(self, epoch: int, epoch_stats: dict[str, float]) -> bool:
        if self.min_ess is not None and epoch_stats["ess"] < self.min_ess and epoch < self.n_epochs:
            self._stopped_epoch = epoch
            return False
        return True

    def after_update(self, stats: dict[str, float]) -> None:
        self.logger.record("train/stopped_epoch", self._stopped_epoch)
