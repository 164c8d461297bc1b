"""What every algorithm of the suite shares on top of SB3's ``OnPolicyAlgorithm``.

The base class holds the plumbing only: argument checks, the split of the policy into actor
and critic parameters, critic regression, the non-finite guard and the post-update
diagnostics. Each algorithm's ``train()`` states its own loss.

One training-mode rule for every algorithm: ``train()`` puts the policy in training mode for
its gradient passes, and whatever stands for the policy that acted (behaviour snapshots,
bootstrap values, V-trace's weights and values, post-update diagnostics) is computed inside
:meth:`PGAlgorithm.eval_mode`, the mode the rollout was collected in. (NaturalPG's Fisher is
no snapshot of that policy: it is taken on the gradient's own training-mode pass.)

One unit for ``train/n_updates`` (``_n_updates``) in every algorithm: policy updates, one per
``train()`` call, i.e. one per rollout, however many gradient steps the update takes (those are
logged as ``train/sgd_steps``). It is the count SB3's A2C and sb3-contrib's TRPO keep, and the
``update`` the monitor callbacks number. ``train()`` increments it once, after the update's last
weight change; while an update runs it is ``_n_updates + 1``, which is what error messages name.

At most one host-device sync per gradient step: the non-finite guard checks everything a step
must not use in one fused reduction, read with the step's other host reads (:meth:`PGAlgorithm.optimizer_step`);
the logged figures stay tensors until one read per ``train()`` (:meth:`PGAlgorithm.record_common`);
the float64 diagnostics run on a CPU copy (:func:`~sb3_pgx.common.update_stats.log_weight_stats`).
"""

import functools
import inspect
import operator
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, TypedDict, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    BasePolicy,
    MultiInputActorCriticPolicy,
)
from stable_baselines3.common.type_aliases import (
    DictRolloutBufferSamples,
    GymEnv,
    MaybeCallback,
    RolloutBufferSamples,
    TensorDict,
)
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn import functional as F

from sb3_pgx.common.update_stats import (
    TRUST_REGION_PREFIX,
    BehaviourBatch,
    action_tensor,
    distribution_checks,
    eval_mode,
    is_mode_dependent,
    log_weight_stats,
    map_distribution,
    snapshot_distribution,
    trust_region_epsilon,
    update_log_weights,
)
from sb3_pgx.common.validation import check_int, check_on_policy_arguments, check_range
from sb3_pgx.common.workers import WorkerPool, env_actions

SelfPGAlgorithm = TypeVar("SelfPGAlgorithm", bound="PGAlgorithm")
SamplesT = TypeVar("SamplesT", RolloutBufferSamples, DictRolloutBufferSamples)

# Parameter-name prefixes of the critic in SB3's ActorCriticPolicy (and its Cnn / MultiInput
# variants). Everything else (shared features extractor, policy MLP, action head, log_std)
# moves the action distribution and belongs to the actor.
_CRITIC_PREFIXES = ("value_net.", "mlp_extractor.value_net.", "vf_features_extractor.")

#: Ceiling of the log importance weights inside a loss (w <= e^20 ~ 4.9e8). Above it,
#: ``exp(log_w) * A`` and its gradient overflow float32 (e^89) or the gradient-norm clipping
#: (norms over ~1e19), and one inf turns the whole step into NaN. A weight that large means
#: the batch's effective sample size is 1 anyway; such weights are truncated, without
#: gradient, as ISPG's ``max_weight`` truncates. Diagnostics see the raw weights.
MAX_LOG_WEIGHT = 20.0


def bounded_log_weights(log_weights: th.Tensor) -> th.Tensor:
    """``min(log_w, MAX_LOG_WEIGHT)`` (no gradient above the ceiling), any shape."""
    return th.clamp(log_weights, max=MAX_LOG_WEIGHT)


_ENV_HINT = "Check the environment's observations and rewards (wrap it in VecCheckNan to find the step)."


def _all_finite(observations: np.ndarray | dict[str, np.ndarray]) -> bool:
    """Whether every float entry is finite (integer ones, e.g. images, always are: not copied to check)."""
    values = observations.values() if isinstance(observations, dict) else [observations]
    arrays = (np.asarray(value) for value in values)
    return all(np.isfinite(array).all() for array in arrays if np.issubdtype(array.dtype, np.inexact))


def policy_entropy_loss(distribution: Distribution, log_prob: th.Tensor) -> th.Tensor:
    """SB3's entropy loss ``-mean(entropy)``, shape ``[]``.

    A distribution without a closed-form entropy (the squashed Gaussian of gSDE with
    ``squash_output``) gets the single-sample estimate ``-mean(-log_prob)``, as in SB3's A2C and PPO.

    :param distribution: the policy's distribution on the batch
    :param log_prob: log-probabilities of the batch's actions under it (any shape)
    """
    entropy = distribution.entropy()
    return log_prob.mean() if entropy is None else -entropy.mean()


def map_observations(fn: Callable[[Any], Any], observations: Any) -> Any:
    """``fn`` applied to a batch of observations, or to each entry of a dict observation.

    :param fn: takes and returns one array or tensor (e.g. indexing, reshaping, moving to the device)
    :param observations: a tensor or array, or a dict of them
    :return: of the same structure
    """
    if isinstance(observations, dict):
        return {key: fn(value) for key, value in observations.items()}
    return fn(observations)


def index_samples(samples: SamplesT, indices: th.Tensor) -> SamplesT:
    """The rows ``indices`` of every field of a batch of buffer samples (dict observations key by key).

    :param samples: SB3's ``RolloutBufferSamples`` or ``DictRolloutBufferSamples`` of ``N`` rows
    :param indices: long tensor of positions, ``[B]``, on the samples' device
    :return: samples of the same type, ``B`` rows
    """
    return type(samples)(*(map_observations(lambda tensor: tensor[indices], field) for field in samples))


class SB3Arguments(TypedDict, total=False):
    """The arguments every SB3 algorithm takes, with SB3's own defaults: the leaves take them as
    ``**kwargs`` (typed, so editors and type checkers know them) and hand them on to SB3.

    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run (default ``"auto"``)
    :param stats_window_size: Window size for the rollout logging (number of episodes averaged, default 100)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    """

    policy_kwargs: dict[str, Any] | None
    tensorboard_log: str | None
    verbose: int
    seed: int | None
    device: th.device | str
    stats_window_size: int
    rollout_buffer_class: type[RolloutBuffer] | None
    rollout_buffer_kwargs: dict[str, Any] | None


class AlgorithmArguments(SB3Arguments, total=False):
    """SB3's common arguments (:class:`SB3Arguments`) and the suite's rollout workers' (:mod:`sb3_pgx.common.workers`).

    :param n_workers: Ray actors that collect the rollouts, each with its own environments and a CPU copy of
        the policy (0, default: SB3's in-process collection); ``env`` must then be an env id or a callable
        returning a gymnasium env. Needs ``pip install 'sb3-pgx[distributed]'``
    :param envs_per_worker: environments each worker steps (the rollout is ``n_steps * n_workers * envs_per_worker``)
    :param ray_address: Ray cluster to join (``"auto"`` or ``"host:port"``), or ``"local"`` to always start a
        new local instance; None (Ray's default): the running instance if there is one (this process's, then
        ``RAY_ADDRESS``, then the last ``ray start`` on this machine), else a new local one. Only read when
        this process has not started Ray yet: otherwise the workers run on the instance it has
    :param asynchronous: IMPALA's actor-learner mode, for algorithms that correct for policy lag (VTraceA2C):
        the workers keep collecting with the last weights they received and each update trains on the first
        rollout that is ready, one worker's ``n_steps * envs_per_worker`` steps (False, default: synchronous
        collection, every worker with the current weights)
    :param broadcast_interval: asynchronous mode: the learner sends its weights every this many updates
    :param max_inflight: asynchronous mode: rollout requests queued at each worker (at least 1; 2, the default,
        keeps a worker busy while the learner trains on its last rollout)
    """

    n_workers: int
    envs_per_worker: int
    ray_address: str | None
    asynchronous: bool
    broadcast_interval: int
    max_inflight: int


def accepted_arguments(cls: type) -> frozenset[str]:
    """The names ``cls(...)`` takes: its ``__init__``'s, and its bases' while each hands ``**kwargs`` on."""
    names: set[str] = set()
    for klass in cls.__mro__:
        parameters = inspect.signature(klass.__init__).parameters.values()
        names.update(p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self")
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return frozenset(names)


def base_arguments(init_locals: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a constructor that its base class takes, by name, so that it need not list them again.

    A leaf class keeps an explicit signature (defaults and ``:param:`` docs, as SB3's algorithms) and
    hands on what its base takes with ``super().__init__(**base_arguments(locals()))``; what only the
    leaf takes stays with it. A value the leaf changes (e.g. a fixed ``ent_coef``) is passed beside it.

    :param init_locals: the ``__init__``'s ``locals()``, taken before it binds any other name; its
        ``__class__`` (bound because the body calls ``super()``) names the class whose base is meant
    :return: the arguments, by name, that the base's constructor (with its own bases) accepts, and
        everything the leaf took as ``**kwargs``
    """
    cls = init_locals["__class__"]
    accepted = accepted_arguments(cls.__mro__[1])
    arguments = {name: value for name, value in init_locals.items() if name in accepted}
    for parameter in inspect.signature(cls.__init__).parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:  # e.g. ``**kwargs: Unpack[SB3Arguments]``: all handed on
            arguments.update(init_locals[parameter.name])
    return arguments


class NonFiniteError(FloatingPointError):
    """A loss, gradient or weight became NaN or infinite; training stopped before using it."""


def without_distribution_checks(train: Callable[[SelfPGAlgorithm], None]) -> Callable[[SelfPGAlgorithm], None]:
    """Decorate an algorithm's ``train()``: it runs without torch.distributions' argument checks.

    Each check reads a tensor on the host (a device sync) in every distribution a gradient pass
    builds; inside ``train()`` the inputs come from the policy and the buffer, and the non-finite
    guard of every step (:meth:`PGAlgorithm.optimizer_step`) stops what the checks would catch.
    Rollout collection goes without them too, see :meth:`PGAlgorithm.collect_rollouts`.
    """

    @functools.wraps(train)
    def unchecked_train(self: SelfPGAlgorithm) -> None:
        with distribution_checks(False):
            train(self)

    return unchecked_train


class FiniteObservationCheck(BaseCallback):
    """Stops collection with a :class:`NonFiniteError` at the step an environment returns a NaN or
    inf observation, before the policy acts on it (one NumPy check per step; see
    :meth:`PGAlgorithm.collect_rollouts`). The sb3_pgx algorithms add it to every ``learn``. With
    rollout workers it runs as the learner replays a rollout: before any update on it, but after the
    worker's own policy acted on the observation."""

    def _on_step(self) -> bool:
        self.model._check_observations(self.locals["new_obs"])
        return True


class PGAlgorithm(OnPolicyAlgorithm):
    """
    Base of the sb3_pgx algorithms (not an algorithm by itself).

    Takes SB3's ``OnPolicyAlgorithm`` arguments by name (``on_policy_arguments``, checked here
    before SB3 sees them; a leaf class hands them on with :func:`base_arguments`) plus:

    :param n_workers, envs_per_worker, ray_address, asynchronous, broadcast_interval, max_inflight: the rollout
        workers on Ray (see :class:`AlgorithmArguments`; with ``n_workers > 0`` the env is a
        :class:`~sb3_pgx.common.workers.WorkerPool` and :meth:`collect_from_workers` collects). Only a
        class with :attr:`corrects_policy_lag` takes ``asynchronous=True``
    :param normalize_advantage: Whether to normalise the advantages of each batch
    :param diagnostics_epsilon: Half-width of the trust region ``|w - 1| <= epsilon`` of the logged
        clip fractions, unless the algorithm has a PPO ``clip_range`` (a diagnostic; it does not
        change the update)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }
    supported_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (
        spaces.Box,
        spaces.Discrete,
        spaces.MultiDiscrete,
        spaces.MultiBinary,
    )
    #: Whether the update corrects for data collected by an older policy (V-trace does), which
    #: asynchronous workers produce.
    corrects_policy_lag: ClassVar[bool] = False

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        normalize_advantage: bool,
        diagnostics_epsilon: float,
        n_workers: int = 0,
        envs_per_worker: int = 1,
        ray_address: str | None = None,
        asynchronous: bool = False,
        broadcast_interval: int = 1,
        max_inflight: int = 2,
        **on_policy_arguments: Any,
    ):
        check_on_policy_arguments(on_policy_arguments)
        check_range("diagnostics_epsilon", diagnostics_epsilon, low=0.0, low_open=True)
        check_int("n_workers", n_workers, 0)
        check_int("envs_per_worker", envs_per_worker, 1)
        check_int("broadcast_interval", broadcast_interval, 1)
        check_int("max_inflight", max_inflight, 1)
        if ray_address is not None and not isinstance(ray_address, str):
            raise ValueError(f"ray_address={ray_address!r} is not allowed: expected None, 'auto' or 'host:port'")
        if not isinstance(asynchronous, bool):
            raise ValueError(f"asynchronous={asynchronous!r} is not allowed: expected True or False")
        if asynchronous and not self.corrects_policy_lag:
            raise ValueError(
                f"asynchronous=True is not allowed with {self.__class__.__name__}: asynchronous workers collect with "
                "weights several updates old, and only V-trace corrects for that policy lag (VTraceA2C); "
                "use asynchronous=False (synchronous workers, no lag)"
            )
        if asynchronous and n_workers == 0:
            raise ValueError("asynchronous=True is not allowed with n_workers=0: expected n_workers >= 1")
        if n_workers > 0:
            env = WorkerPool(env, n_workers, envs_per_worker, ray_address, asynchronous, broadcast_interval, max_inflight)
        self._check_action_space(env)
        use_sde = on_policy_arguments["use_sde"]
        if (on_policy_arguments.get("policy_kwargs") or {}).get("squash_output", False) and not use_sde:
            # SB3's policy only asserts this, after the networks are built (and not at all under -O).
            raise ValueError(
                "policy_kwargs squash_output=True is not allowed with use_sde=False: SB3 squashes only gSDE actions"
            )
        # The leaf builds the model once its own attributes are set.
        on_policy_arguments.pop("_init_setup_model", None)
        # SB3 only asserts the action space (AssertionError, nothing under -O): checked here instead, once
        # more for an env id, whose env SB3 has just made.
        super().__init__(policy, env, **on_policy_arguments, _init_setup_model=False, supported_action_spaces=None)
        if isinstance(env, str):
            try:
                self._check_action_space(self.env)
            except ValueError:
                self.env.close()
                raise
        self.normalize_advantage = normalize_advantage
        self.diagnostics_epsilon = diagnostics_epsilon
        self.n_workers = n_workers
        self.envs_per_worker = envs_per_worker
        self.ray_address = ray_address
        self.asynchronous = asynchronous
        self.broadcast_interval = broadcast_interval
        self.max_inflight = max_inflight
        # Updates between the policy that collected the rollout in the buffer and the learner's (the
        # largest over its workers): 0 except with asynchronous workers.
        self.rollout_policy_lag = 0
        self._last_collect_end: float | None = None  # perf_counter() when the last rollout was in (workers only)
        # Gradient steps taken so far by the update in progress (scratch, reset by start_update).
        self._update_sgd_steps = 0
        # (policy, whether its forward depends on its mode): see mode_dependent.
        self._mode_dependent_cache: tuple[BasePolicy, bool] | None = None

    @classmethod
    def _check_action_space(cls, env: GymEnv | str) -> None:
        """A clear error for an action space no SB3 actor-critic distribution covers (e.g. Tuple)."""
        action_space = getattr(env, "action_space", None)
        if action_space is not None and not isinstance(action_space, cls.supported_spaces):
            allowed = ", ".join(space.__name__ for space in cls.supported_spaces)
            raise ValueError(f"env action_space={action_space} is not supported by {cls.__name__}: expected one of {allowed}")

    # ----------------------------------------------------------------- collection
    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's collection, unchanged step by step; non-finite data is caught before it is used.

        The steps run without torch.distributions' argument checks, which cost about a fifth of
        the collection time of a small policy (several tensor ops and a host read in every
        distribution built and every ``log_prob``) and would only catch non-finite inputs. Those are
        caught with NumPy instead: an observation at the step the environment returns it, before
        the policy acts on it (:class:`FiniteObservationCheck`, which :meth:`_init_callback` puts
        first among the callbacks), the first one before the rollout; rewards (and so values,
        log-probabilities, advantages and returns) once per rollout, before ``train()`` takes any
        step on them.
        """
        self._check_observations()  # e.g. the reset observation at the start of learn
        if isinstance(env, WorkerPool):
            complete = self.collect_from_workers(env, callback, rollout_buffer, n_rollout_steps)
        else:
            self.rollout_policy_lag = 0  # (a model trained on asynchronous workers may be given an env)
            with distribution_checks(False):
                complete = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        if complete:
            for name in ("rewards", "values", "log_probs", "advantages", "returns"):
                if not np.isfinite(getattr(rollout_buffer, name)).all():
                    raise NonFiniteError(
                        f"{self.__class__.__name__}: the rollout's {name} are not finite at update {self._n_updates + 1} "
                        f"(timestep {self.num_timesteps}); the update was skipped and the weights are unchanged. "
                        f"{_ENV_HINT}"
                    )
        return complete

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        """SB3's, with :class:`FiniteObservationCheck` run first at every step."""
        if isinstance(callback, list):
            callback = CallbackList(callback)
        if not isinstance(callback, BaseCallback):  # None or a function, as SB3 takes them
            callback = ConvertCallback(callback)
        return super()._init_callback(CallbackList([FiniteObservationCheck(), callback]), progress_bar)

    def _check_observations(self, observations: Any = None) -> None:
        """Raise a :class:`NonFiniteError` if ``observations`` (default: the last observation) are not finite."""
        observations = self._last_obs if observations is None else observations
        if observations is not None and not _all_finite(observations):
            raise NonFiniteError(
                f"{self.__class__.__name__}: the environment returned a non-finite observation "
                f"(timestep {self.num_timesteps}); no update was made on it. {_ENV_HINT}"
            )

    def collect_from_workers(
        self, pool: WorkerPool, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's ``collect_rollouts`` with the steps taken by the rollout workers: all of them with the current
        weights (synchronous), or the first rollout ready, from one worker (asynchronous).

        The workers' rollout fills the buffer step by step, and the callbacks see SB3's sequence:
        ``on_rollout_start``, one ``on_step`` per vectorised step with that step's ``new_obs``,
        ``rewards``, ``dones`` and ``infos`` in ``locals``, then ``on_rollout_end``. Logs the policy lag
        (the learner's version, its count of updates, minus the one that collected the data: 0 in
        synchronous mode), the workers replaced so far (``train/worker_restarts``) and the share of wall
        time the learner waited for the rollouts.
        """
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        callback.on_rollout_start()
        waited = pool.wait_seconds
        rollout = pool.collect(self.policy, self._n_updates, n_rollout_steps)
        now = time.perf_counter()
        # This iteration's wall time: since the last rollout came in, or since learn() started.
        since = self._last_collect_end
        if since is None:
            since = now - (time.time_ns() - self.start_time) / 1e9
        self.logger.record("time/learner_wait_fraction", (pool.wait_seconds - waited) / max(now - since, 1e-9))
        self._last_collect_end = now
        lags = [self._n_updates - version for version in rollout["versions"]]
        self.rollout_policy_lag = max(lags)
        self.logger.record("train/policy_lag_mean", float(np.mean(lags)))
        self.logger.record("train/policy_lag_max", max(lags))
        self.logger.record("train/worker_restarts", pool.restarts)
        observations, env = rollout["observations"], pool
        for step in range(n_rollout_steps):
            # The names SB3's collect_rollouts gives the callbacks' locals, with the same shapes.
            obs = map_observations(operator.itemgetter(step), observations)
            last = step == n_rollout_steps - 1
            new_obs = rollout["last_obs"] if last else map_observations(operator.itemgetter(step + 1), observations)
            rewards, dones, infos = rollout["rewards"][step], rollout["dones"][step], rollout["infos"][step]
            actions = rollout["actions"][step]
            clipped_actions = env_actions(self.policy, self.action_space, actions)
            values = th.tensor(rollout["values"][step]).reshape(-1, 1)  # copies: Ray's arrays are read-only
            log_probs = th.tensor(rollout["log_probs"][step])
            n_steps = step + 1
            self.num_timesteps += pool.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            rewards = rewards + self._timeout_bootstrap(dones, infos)
            rollout_buffer.add(obs, actions, rewards, rollout["episode_starts"][step], values, log_probs)
        # Copies, writable (Ray hands out read-only arrays, which torch warns about).
        self._last_obs = map_observations(np.array, rollout["last_obs"])
        self._last_episode_starts = np.array(rollout["last_dones"])
        with th.no_grad():
            values = self.policy.predict_values(obs_as_tensor(self._last_obs, self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=self._last_episode_starts)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _timeout_bootstrap(self, dones: np.ndarray, infos: list[dict]) -> np.ndarray:
        """``gamma * V(terminal observation)`` for each env whose episode a time limit cut at this step, else 0:
        SB3's ``collect_rollouts`` adds it to the reward. Computed here with the learner's critic, not by the
        worker, so that an asynchronous worker's old critic does not reach the targets."""
        bootstrap = np.zeros(len(dones), dtype=np.float32)
        for index, (done, info) in enumerate(zip(dones, infos, strict=True)):
            if done and info.get("terminal_observation") is not None and info.get("TimeLimit.truncated", False):
                terminal_obs = self.policy.obs_to_tensor(info["terminal_observation"])[0]
                with th.no_grad():
                    bootstrap[index] = self.gamma * self.policy.predict_values(terminal_obs)[0].item()
        return bootstrap

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        # A learn's wait fraction counts from its own start, and asynchronous workers get its weights.
        self._last_collect_end = None
        if isinstance(self.env, WorkerPool):
            self.env.forget_weights()
        self.begin_learn(reset_num_timesteps)
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def begin_learn(self, reset_num_timesteps: bool) -> None:
        """Hook at the start of every ``learn``, before SB3 sets it up (e.g. to restart a schedule of the
        algorithm's own when ``reset_num_timesteps``)."""

    def _setup_model(self) -> None:
        super()._setup_model()
        if isinstance(self.env, WorkerPool):
            self.env.attach(self.policy_class, self.policy_kwargs, self.use_sde, self.sde_sample_freq)

    @property
    def workers(self) -> list[Any]:
        """The Ray actor handles of the rollout workers (empty without workers, or before ``learn`` starts them)."""
        return self.env.workers if isinstance(self.env, WorkerPool) else []

    def close(self) -> None:
        """Stop the rollout workers, if any (Ray also stops them when this process exits)."""
        if isinstance(self.env, WorkerPool):
            self.env.close()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_update_sgd_steps", "_mode_dependent_cache", "_last_collect_end"]

    # ----------------------------------------------------------------- parameters
    def actor_critic_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Split the policy's parameters into those of the actor and those of the critic.

        A features extractor shared by both belongs to the actor: the critic's regression
        must not move the action distribution behind the policy step's back.
        """
        actor, critic = [], []
        for name, param in self.policy.named_parameters():
            (critic if name.startswith(_CRITIC_PREFIXES) else actor).append(param)
        return actor, critic

    def policy_parameters(self) -> list[nn.Parameter]:
        """The parameters the policy's optimiser steps (SB3 builds it on all of the policy's), read from
        its parameter groups: cheaper than walking the modules at every update."""
        return [param for group in self.policy.optimizer.param_groups for param in group["params"]]

    # ----------------------------------------------------------------- updates
    def start_update(self) -> None:
        """Begin ``train()``: training mode for the gradient passes, the learning rate at the current
        progress, and no gradient step taken yet in this update."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self._update_sgd_steps = 0

    # ----------------------------------------------------------------- batches
    def whole_batch(self) -> RolloutBufferSamples:
        """The rollout as one batch (SB3's ``get`` flattens it; the order does not matter here)."""
        return next(self.rollout_buffer.get(batch_size=None))

    def ordered_batch(self) -> RolloutBufferSamples:
        """The whole batch in buffer order (position ``env * n_steps + t``), flattening the buffer if needed.

        SB3 flattens the buffer's arrays on the first draw of ``get()``, which also draws a permutation
        from the global NumPy generator; that draw is undone, so that the epochs' shuffles are the ones
        PPO's ``get(batch_size)`` would draw.
        """
        if not self.rollout_buffer.generator_ready:
            state = np.random.get_state()  # noqa: NPY002 (the generator SB3 seeds and draws from)
            next(self.rollout_buffer.get(batch_size=1))
            np.random.set_state(state)  # noqa: NPY002
        n_samples = self.rollout_buffer.buffer_size * self.rollout_buffer.n_envs
        return self.rollout_buffer._get_samples(np.arange(n_samples))

    def shuffled_minibatches(self, n_samples: int, batch_size: int | None) -> list[th.Tensor]:
        """One pass over ``n_samples`` positions in shuffled minibatches of ``batch_size`` (None: one
        batch of all), as long tensors on the device, to index a batch with :func:`index_samples`.

        The permutation is drawn from the global NumPy generator as SB3's ``RolloutBuffer.get``
        draws it, so ``index_samples(ordered_batch(), indices)`` gives the minibatches ``get`` would,
        without copying each one from NumPy arrays again.
        """
        permutation = th.as_tensor(np.random.permutation(n_samples), device=self.device)  # noqa: NPY002 (SB3 seeds it)
        return list(permutation.split(n_samples if batch_size is None else batch_size))

    @contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Run the block with the policy in eval mode (as it acts), then restore its previous mode.

        SB3 collects rollouts in eval mode, so the recorded log-probabilities and values are those
        of the eval-mode policy. Anything that stands for that policy must be computed the same
        way: with Dropout or BatchNorm in a features extractor, a training-mode pass is another
        policy (random masks, batch statistics), and BatchNorm cannot even run in training mode on
        a batch of one row (the bootstrap observation of a single env). Gradients still flow; add
        ``th.no_grad()`` where none are needed. A policy whose forward does not depend on the
        mode (:func:`~sb3_pgx.common.update_stats.is_mode_dependent`) is not switched: same outputs.
        """
        with eval_mode(self.policy, self.mode_dependent):
            yield

    @property
    def mode_dependent(self) -> bool:
        """Whether the policy's forward depends on its training flag (Dropout, BatchNorm, ...;
        see :func:`~sb3_pgx.common.update_stats.is_mode_dependent`). When it does not, a
        training-mode pass also stands for the eval-mode policy, and the algorithms skip the
        separate eval-mode passes the training-mode rule would otherwise cost.

        Found once per policy object (the walk over its modules costs as much as a small
        update's arithmetic); a policy whose modules are swapped in place must be rebuilt."""
        cached = self._mode_dependent_cache
        if cached is None or cached[0] is not self.policy:
            cached = self._mode_dependent_cache = (self.policy, is_mode_dependent(self.policy))
        return cached[1]

    def behaviour_batch(self, samples: RolloutBufferSamples, with_distribution: bool = True) -> BehaviourBatch:
        """The behaviour data of ``samples`` for the post-update figures, snapshotted before an
        update in eval mode (the mode the rollout's log-probabilities were recorded in)."""
        with self.eval_mode():
            old_distribution = snapshot_distribution(self.policy, samples.observations) if with_distribution else None
        return BehaviourBatch(
            samples.observations, action_tensor(samples.actions, self.action_space), samples.old_log_prob, old_distribution
        )

    def behaviour_and_gradient_pass(self, samples: RolloutBufferSamples) -> tuple[BehaviourBatch, Distribution]:
        """The behaviour batch of ``samples`` (:meth:`behaviour_batch`) and the policy's training-mode
        distribution on them, with gradient, before any step: one pass where one suffices.

        If the policy's forward depends on its mode (:attr:`mode_dependent`), the snapshot takes its
        own eval-mode pass, first (a training-mode pass moves BatchNorm's running statistics);
        otherwise the gradient's pass, detached, is the snapshot.
        """
        if self.mode_dependent:
            behaviour = self.behaviour_batch(samples)
            return behaviour, self.policy.get_distribution(samples.observations)
        distribution = self.policy.get_distribution(samples.observations)
        behaviour = self.behaviour_batch(samples, with_distribution=False)
        behaviour.old_distribution = map_distribution(distribution, th.Tensor.detach)
        return behaviour, distribution

    def evaluate(self, observations: th.Tensor | TensorDict, actor_rows: int | None = None) -> tuple[Distribution, th.Tensor]:
        """The current action distribution and values, in one pass (as SB3's ``evaluate_actions``).

        Not a call to ``evaluate_actions``: it returns log-probabilities and entropies, while the KL
        penalties and the trust-region figures need the distribution itself; and SB3's public
        ``get_distribution`` plus ``predict_values`` would run the features extractor (a CNN for
        ``CnnPolicy``) twice. The body follows ``evaluate_actions`` step for step.

        :param observations: ``[M, *obs_shape]`` (or a dict of them)
        :param actor_rows: the distribution covers the first ``actor_rows`` rows only (None: all),
            so that rows which only need a value (bootstrap observations) ride along in the pass
        :return: the action distribution on the first ``actor_rows`` rows and the values ``[M]``
        """
        policy = self.policy
        features = policy.extract_features(observations)
        if policy.share_features_extractor:
            latent_pi, latent_vf = policy.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = policy.mlp_extractor.forward_actor(pi_features)
            latent_vf = policy.mlp_extractor.forward_critic(vf_features)
        if actor_rows is not None:
            latent_pi = latent_pi[:actor_rows]
        return policy._get_action_dist_from_latent(latent_pi), policy.value_net(latent_vf).flatten()

    def normalize(self, advantages: th.Tensor) -> th.Tensor:
        """Per-batch advantage normalisation, a no-op for a batch of one."""
        if not self.normalize_advantage or advantages.numel() < 2:
            return advantages
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    # ----------------------------------------------------------------- guards
    def check_finite(self, fetch: Sequence[th.Tensor] = (), **quantities: th.Tensor) -> list[float]:
        """Stop training before a non-finite quantity reaches the weights.

        All quantities are checked in one fused reduction and read in one host-device transfer,
        with the 0-d tensors of ``fetch`` (figures the caller needs on the host anyway); the
        culprit's name is looked up only when the check fails.

        :param fetch: 0-d tensors to read in the same transfer (as float32)
        :return: the values of ``fetch``, as floats
        :raises NonFiniteError: naming the algorithm, the quantity, the update in progress and
            the gradient step within it
        """
        values = [value.detach().reshape(-1) for value in quantities.values()]
        if values:
            finite = th.isfinite(values[0] if len(values) == 1 else th.cat(values)).all()
        else:
            finite = th.ones((), dtype=th.bool, device=self.device)
        if fetch:
            ok, *fetched = th.stack([finite.float(), *(value.detach().float().reshape(()) for value in fetch)]).tolist()
        else:  # the critic's steps and most others: the flag alone
            ok, fetched = bool(finite), []
        if ok:
            return fetched
        for name, value in quantities.items():
            if not bool(th.isfinite(value).all()):
                done = self._update_sgd_steps
                kept = "unchanged" if done == 0 else f"those after its gradient step {done}"
                raise NonFiniteError(
                    f"{self.__class__.__name__}: {name} is not finite at update {self._n_updates + 1}, "
                    f"gradient step {done + 1} (timestep {self.num_timesteps}); the step was skipped and the weights "
                    f"are {kept}. Check the environment's observations and rewards (VecCheckNan) and the learning rate."
                )

    def optimizer_step(
        self,
        loss: th.Tensor,
        clip_params: list[nn.Parameter],
        frozen: list[nn.Parameter] = (),
        name: str = "loss",
        check: dict[str, th.Tensor] | None = None,
        fetch: Sequence[th.Tensor] = (),
    ) -> list[float]:
        """One optimiser step on ``loss``: backward, drop the gradients of ``frozen``, clip, step.

        Before the step, one :meth:`check_finite` (the step's only host-device sync) checks the
        quantities of ``check`` (named first, so that e.g. a bad importance weight is reported as
        such) and the clipped gradient's norm, where a NaN or inf anywhere in the loss or its
        gradient shows.

        :param check: further quantities the step must not use unless finite
        :param fetch: 0-d tensors to read in the same transfer (see :meth:`check_finite`)
        :return: the values of ``fetch``
        """
        self.policy.optimizer.zero_grad()
        loss.backward()
        for param in frozen:
            param.grad = None
        grad_norm = th.nn.utils.clip_grad_norm_(clip_params, self.max_grad_norm)
        fetched = self.check_finite(fetch, **(check or {}), **{f"{name} gradient norm": grad_norm})
        self.policy.optimizer.step()
        self._update_sgd_steps += 1
        return fetched

    # ----------------------------------------------------------------- critic
    def fit_critic(self, n_passes: int, batch_size: int | None) -> th.Tensor:
        """Regress the value function on the rollout's returns.

        ``n_passes`` passes of minibatches of ``batch_size`` (None: whole batch). The actor's
        parameters are left untouched.

        :return: mean value loss over all minibatches, a 0-d tensor (read with the other logged figures)
        """
        actor, critic = self.actor_critic_parameters()
        batch = self.ordered_batch()
        losses = []
        for _ in range(n_passes):
            for indices in self.shuffled_minibatches(len(batch.returns), batch_size):
                # Only what the regression reads: observations and returns.
                observations = map_observations(lambda tensor, rows=indices: tensor[rows], batch.observations)
                values = self.policy.predict_values(observations).flatten()
                value_loss = F.mse_loss(batch.returns[indices], values)
                self.optimizer_step(self.vf_coef * value_loss, critic, frozen=actor, name="value_loss")
                losses.append(value_loss.detach())
        return th.stack(losses).mean()

    # ----------------------------------------------------------------- logging
    def record_update_stats(
        self, batch: BehaviourBatch, log_weights: th.Tensor | None = None, kl: th.Tensor | None = None
    ) -> dict[str, float]:
        """Log, under ``trust_region/``, how far the update moved the policy from ``batch``: the
        figures the monitor callbacks log under the same keys, with the same epsilon.

        :param log_weights: the updated policy's log-weights on ``batch`` if the caller already
            evaluated it (with ``kl``, see :func:`~sb3_pgx.common.update_stats.update_log_weights`);
            None: evaluate it here
        """
        if log_weights is None:
            log_weights, kl = update_log_weights(self.policy, batch)
        stats = log_weight_stats(log_weights, trust_region_epsilon(self), kl=kl, valid=batch.valid)
        for key, value in stats.items():
            self.logger.record(f"{TRUST_REGION_PREFIX}/{key}", value)
        return stats

    def record_common(self, **figures: th.Tensor | float) -> None:
        """Log the figures every SB3 on-policy algorithm logs after ``train()`` (after ``_n_updates`` was
        incremented), ``train/sgd_steps`` (the gradient steps the update took) and ``figures``
        under ``train/``.

        Figures given as tensors are read from the device here, all in one transfer: the one
        read of logged figures per ``train()``.
        """
        if hasattr(self.policy, "log_std"):
            figures["std"] = th.exp(self.policy.log_std).mean()
        tensors = {key: value for key, value in figures.items() if isinstance(value, th.Tensor)}
        if tensors:
            read = th.stack([value.detach().float().reshape(()) for value in tensors.values()]).tolist()
            figures.update(zip(tensors, read, strict=True))
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/sgd_steps", self._update_sgd_steps)
        for key, value in figures.items():
            self.logger.record(f"train/{key}", value)

    def learn(
        self: SelfPGAlgorithm,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPGAlgorithm:
        """SB3's ``learn``; ``tb_log_name`` defaults to the algorithm's class name."""
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name or self.__class__.__name__,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
