"""Rollout workers on Ray: whole rollouts collected by actors that own their environments.

Synchronous collection (every algorithm, ``n_workers > 0``): once per update the learner puts its
policy's weights into Ray's object store (one ``ray.put``); each of the ``n_workers`` actors loads
them into its CPU copy of the policy and steps its own ``envs_per_worker`` environments for
``n_steps``, exactly as SB3's ``OnPolicyAlgorithm.collect_rollouts`` does (the same policy call,
action clipping or unscaling and gSDE noise resets); the learner lays the rollouts side by side
(worker ``k``'s envs are columns ``k * envs_per_worker ...``) into SB3's rollout buffer, adding the
time-out bootstrap with its own critic, and the algorithm's ``train()`` runs unchanged. Every rollout
carries the policy version that collected it; in synchronous mode the lag is 0 by construction.

Asynchronous collection (IMPALA's actor-learner layout; VTraceA2C only, ``asynchronous=True``):
each worker always has up to ``max_inflight`` rollout requests queued, so it never waits for the
learner; the learner takes the first rollout that is ready (``ray.wait``), one worker's
``n_steps * envs_per_worker`` steps, trains on it, and puts fresh weights into the object store
every ``broadcast_interval`` updates. A request carries the newest weights when it is sent, so the
rollouts that arrive were collected by a policy some updates behind the learner's (the policy lag),
which V-trace corrects for against the behaviour log-probabilities the worker recorded.

:class:`WorkerPool` is a ``VecEnv`` as far as SB3 is concerned (spaces, ``num_envs``, ``seed``,
``reset``, ``close``), so ``model.env`` is the pool and ``model.env.workers`` the actor handles;
it refuses step-by-step stepping, which would defeat the workers.

Ray is imported only when workers are asked for: ``pip install 'sb3-pgx[distributed]'``.
"""

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import obs_as_tensor, set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from sb3_pgx.common.update_stats import distribution_checks

EnvSpec = str | Callable[[], gym.Env]


def import_ray() -> Any:
    """``ray``, or an ImportError that names the extra to install."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("Rollout workers (n_workers > 0) need Ray: pip install 'sb3-pgx[distributed]'") from error
    return ray


def check_env_spec(env: Any) -> EnvSpec:
    """Workers build their own environments: ``env`` must be an env id or a callable returning a gymnasium env."""
    if isinstance(env, str) or (callable(env) and not isinstance(env, gym.Env | VecEnv)):
        return env
    raise ValueError(
        f"env={env!r} is not allowed with n_workers > 0: an environment object cannot be shipped to a worker; "
        "pass its id (e.g. 'CartPole-v1') or a function that returns a new gymnasium env"
    )


def make_worker_env(env: EnvSpec, n_envs: int, seed: int | None) -> VecEnv:
    """``n_envs`` copies of ``env``, env ``i`` seeded with ``seed + i``, wrapped as SB3 wraps a training env."""
    return BaseAlgorithm._wrap_env(make_vec_env(env, n_envs=n_envs, seed=seed), verbose=0)


def env_actions(policy: BasePolicy, action_space: spaces.Space, actions: np.ndarray) -> np.ndarray:
    """``actions`` as the environment takes them, as SB3's ``collect_rollouts`` makes them: Box actions
    unscaled (``squash_output``) or clipped to the bounds, others as they are."""
    if not isinstance(action_space, spaces.Box):
        return actions
    return policy.unscale_action(actions) if policy.squash_output else np.clip(actions, action_space.low, action_space.high)


def _stack(values: list) -> Any:
    """Stack per-step observations (arrays, or dicts of arrays) along a new leading time axis."""
    if isinstance(values[0], dict):
        return {key: np.stack([value[key] for value in values]) for key in values[0]}
    return np.stack(values)


def _concat(values: list, axis: int) -> Any:
    """Concatenate workers' arrays (or dicts of arrays) along the env ``axis``."""
    if isinstance(values[0], dict):
        return {key: np.concatenate([value[key] for value in values], axis=axis) for key in values[0]}
    return np.concatenate(values, axis=axis)


class RolloutWorker:
    """One worker: its own vectorised environment and a CPU copy of the policy (run as a Ray actor).

    :param env: env id or callable returning a gymnasium env
    :param n_envs: number of environments it steps together
    :param seed: seed of its first environment (the others: ``seed + 1``, ...); None: unseeded
    :param policy_class: the learner's policy class
    :param policy_kwargs: the arguments the learner built its policy with
    :param use_sde: whether the policy uses gSDE
    :param sde_sample_freq: resample gSDE's noise every this many steps (-1: once per rollout)
    :param torch_threads: set the process's torch intra-op threads to this (the pool's actors: 1, the CPU
        each reserves); None: leave them, as for a worker built in the caller's own process, whose thread
        count (and so its float rounding, and a training run's course) is not the worker's to change
    """

    def __init__(
        self,
        env: EnvSpec,
        n_envs: int,
        seed: int | None,
        policy_class: type[BasePolicy],
        policy_kwargs: dict[str, Any],
        use_sde: bool,
        sde_sample_freq: int,
        torch_threads: int | None = None,
    ):
        if torch_threads is not None:
            th.set_num_threads(torch_threads)
        if seed is not None:  # the worker's action sampling (torch), as its environments, from its seed
            set_random_seed(seed)
        self.env = make_worker_env(env, n_envs, seed)
        self.policy = policy_class(
            self.env.observation_space, self.env.action_space, lambda _: 0.0, use_sde=use_sde, **policy_kwargs
        )
        self.policy.set_training_mode(False)
        self.use_sde, self.sde_sample_freq = use_sde, sde_sample_freq
        self.weights_id = -1  # which of the pool's broadcasts the policy holds
        self.last_obs: Any = None  # the first reset seeds the environments (SB3's VecEnv.seed)
        self.last_episode_starts = np.ones(self.env.num_envs, dtype=bool)

    def reset(self, seed: int | None = None) -> Any:
        """Reset the environments (a new ``learn``); their first observations. ``seed``: seed them (env ``i``
        with ``seed + i``) and the worker's action sampling first, as at its start."""
        if seed is not None:
            set_random_seed(seed)
            self.env.seed(seed)
        self.last_obs = self.env.reset()
        self.last_episode_starts = np.ones(self.env.num_envs, dtype=bool)
        return self.last_obs

    def collect(self, weights: dict[str, th.Tensor], weights_id: int, version: int, n_steps: int) -> dict[str, Any]:
        """``n_steps`` steps of every environment with ``weights`` (a state dict), loaded unless ``weights_id``
        (the pool's count of broadcasts) says the policy holds them already. ``version`` (the learner's count
        of updates when it sent them) comes back with the rollout, for the policy lag: the weights are
        keyed by their broadcast, not by ``version``, which stays the same when the learner's policy
        changes outside an update (``set_parameters``, a ``learn`` stopped mid-update).

        :return: time-major arrays ``[n_steps, n_envs, ...]``: ``observations`` (before each step),
            ``actions`` (as the policy returns them; the buffer reshapes them), ``rewards`` (as the env returned
            them: the learner adds the time-out bootstrap, from the terminal observations in ``infos``),
            ``episode_starts``, ``values``, ``log_probs``, ``dones``; ``infos`` (one list per step);
            ``last_obs`` and ``last_dones`` after the last step; ``version``
        """
        if self.last_obs is None:
            self.reset()
        if weights_id != self.weights_id:
            self.policy.load_state_dict(weights)
            self.weights_id = weights_id
        action_space, policy = self.env.action_space, self.policy
        if self.use_sde:
            policy.reset_noise(self.env.num_envs)
        steps: dict[str, list] = {key: [] for key in (
            "observations", "actions", "rewards", "episode_starts", "values", "log_probs", "dones", "infos",
        )}  # fmt: skip
        for step in range(n_steps):
            if self.use_sde and self.sde_sample_freq > 0 and step % self.sde_sample_freq == 0:
                policy.reset_noise(self.env.num_envs)
            # Without torch's per-step argument checks, as the learner collects: the learner checks each
            # observation as it replays the rollout (FiniteObservationCheck) and the rewards once.
            with th.no_grad(), distribution_checks(False):
                actions, values, log_probs = policy(obs_as_tensor(self.last_obs, policy.device))
            actions = actions.cpu().numpy()  # as the policy returns them; the buffer reshapes them
            new_obs, rewards, dones, infos = self.env.step(env_actions(policy, action_space, actions))
            for key, value in zip(steps, (
                self.last_obs, actions, rewards, self.last_episode_starts,
                values.flatten().numpy(), log_probs.numpy(), dones, infos,
            ), strict=True):  # fmt: skip
                steps[key].append(value)
            self.last_obs, self.last_episode_starts = new_obs, dones
        rollout = {key: (values if key == "infos" else _stack(values)) for key, values in steps.items()}
        return {**rollout, "last_obs": self.last_obs, "last_dones": self.last_episode_starts, "version": version}


class WorkerPool(VecEnv):
    """``n_workers`` Ray actors of ``envs_per_worker`` environments each, seen by SB3 as one ``VecEnv``.

    The actors start with the first ``reset`` (``learn`` calls it), once the learner's policy exists
    (:meth:`attach`). :attr:`workers` holds their handles (for fault injection, custom shutdown);
    :meth:`close` kills them.

    ``num_envs`` is the number of env columns of one update's rollout: all workers' in synchronous
    mode, one worker's (``envs_per_worker``) in asynchronous mode, where each update trains on the
    first rollout that is ready.

    :param env: env id or callable returning a gymnasium env
    :param n_workers: number of workers
    :param envs_per_worker: environments each worker steps
    :param ray_address: Ray cluster to join (``"auto"``, ``"host:port"``), ``"local"``: a new local
        instance; None: the running instance if there is one, else a new local one. Only read when this
        process has not started Ray yet
    :param asynchronous: workers keep collecting with the last weights they received (see the module doc)
    :param broadcast_interval: asynchronous mode: new weights go out every this many updates
    :param max_inflight: asynchronous mode: rollout requests queued at each worker
    """

    def __init__(
        self,
        env: EnvSpec,
        n_workers: int,
        envs_per_worker: int,
        ray_address: str | None = None,
        asynchronous: bool = False,
        broadcast_interval: int = 1,
        max_inflight: int = 2,
    ):
        self.env_spec, self.n_workers, self.envs_per_worker = check_env_spec(env), n_workers, envs_per_worker
        self.ray = import_ray()
        self.ray_address = ray_address
        self.asynchronous, self.broadcast_interval, self.max_inflight = asynchronous, broadcast_interval, max_inflight
        probe = make_worker_env(env, 1, None)  # the spaces, as the workers' envs will have them
        num_envs = envs_per_worker if asynchronous else n_workers * envs_per_worker
        super().__init__(num_envs, probe.observation_space, probe.action_space)
        probe.close()
        self.workers: list[Any] = []
        self._seed: int | None = None
        self._reseed = False  # seed() after the workers started: the next reset seeds them
        self._worker_spec: dict[str, Any] | None = None
        #: seconds the learner spent waiting for the workers' rollouts
        self.wait_seconds = 0.0
        #: workers replaced after they died or raised (their rollouts dropped)
        self.restarts = 0
        #: replacements in a row of one worker; its next failure stops training
        self.max_restarts = 3
        self._failures: list[int] = []
        # Asynchronous mode: the requests on their way (object ref -> worker index), the weights
        # they carry (an object ref) and the learner version of those weights.
        self._inflight: dict[Any, int] = {}
        self._weights: Any = None
        self._weights_version = -1
        self._weights_id = -1  # broadcasts so far (each ray.put of the weights), for the workers' cache

    # ----------------------------------------------------------------- learner side
    def attach(self, policy_class: type[BasePolicy], policy_kwargs: dict, use_sde: bool, sde_sample_freq: int):
        """What the workers build their policy copy with (the learner's, once its policy is set up)."""
        self._worker_spec = dict(
            policy_class=policy_class, policy_kwargs=policy_kwargs, use_sde=use_sde, sde_sample_freq=sde_sample_freq
        )

    def start(self) -> None:
        """Start the actors (joining or starting Ray) unless they run already."""
        if self.workers:
            return
        if self._worker_spec is None:
            raise RuntimeError("WorkerPool.start() before attach(): the workers need the learner's policy class")
        if not self.ray.is_initialized():
            self.ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False)
        self._actor = self.ray.remote(num_cpus=1)(RolloutWorker)  # each worker reserves one CPU
        self.workers = [self._new_worker(index) for index in range(self.n_workers)]
        self._failures = [0] * self.n_workers

    def _worker_seed(self, index: int) -> int | None:
        """Worker ``index`` seeds its ``i``-th env with this ``+ i``."""
        return None if self._seed is None else self._seed + index * self.envs_per_worker

    def _new_worker(self, index: int) -> Any:
        """Start worker ``index``: its envs seeded ``seed + index * envs_per_worker + i``."""
        return self._actor.remote(
            self.env_spec, self.envs_per_worker, self._worker_seed(index), **self._worker_spec, torch_threads=1
        )

    def collect(self, policy: BasePolicy, version: int, n_steps: int) -> dict[str, Any]:
        """The rollout of the update the learner is at (``version``: its count of updates).

        Synchronous: one rollout from every worker with ``policy``'s current weights, laid side by side.
        Asynchronous: the first rollout that is ready, from one worker, collected with the weights it had.

        :return: time-major arrays ``[n_steps, num_envs, ...]`` (``infos``: one list per step),
            ``versions`` (the version that collected each worker's part)
        """
        self.start()
        if self.asynchronous:
            return self._next_rollout(policy, version, n_steps)
        weights = self._put_weights(policy)
        start = time.perf_counter()
        rollouts = self._gather(lambda index: self.workers[index].collect.remote(weights, self._weights_id, version, n_steps))
        self.wait_seconds += time.perf_counter() - start
        merged = {
            key: _concat([rollout[key] for rollout in rollouts], axis=1)
            for key in ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "dones")
        }
        merged["infos"] = [sum((rollout["infos"][step] for rollout in rollouts), []) for step in range(n_steps)]
        merged["last_obs"] = _concat([rollout["last_obs"] for rollout in rollouts], axis=0)
        merged["last_dones"] = np.concatenate([rollout["last_dones"] for rollout in rollouts])
        merged["versions"] = [rollout["version"] for rollout in rollouts]
        return merged

    def forget_weights(self) -> None:
        """Asynchronous mode: the next request broadcasts the learner's weights (a new ``learn``: the policy
        may have changed since, e.g. by ``set_parameters``, without an update)."""
        self._weights = None

    def _put_weights(self, policy: BasePolicy) -> Any:
        """``policy``'s weights in Ray's object store (a CPU copy): one ``ray.put``, a new broadcast."""
        self._weights_id += 1
        return self.ray.put({key: value.detach().cpu() for key, value in policy.state_dict().items()})

    def _next_rollout(self, policy: BasePolicy, version: int, n_steps: int) -> dict[str, Any]:
        """Asynchronous mode: broadcast the weights if ``broadcast_interval`` updates passed since the last
        broadcast, keep ``max_inflight`` requests queued at every worker, and take the first rollout ready."""
        if self._weights is None or version - self._weights_version >= self.broadcast_interval:
            self._weights, self._weights_version = self._put_weights(policy), version
        for index in range(self.n_workers):
            self._fill(index, n_steps)
        start = time.perf_counter()
        rollout = None
        while rollout is None:
            [ready], _ = self.ray.wait(list(self._inflight), num_returns=1)
            index = self._inflight.pop(ready)
            try:
                rollout = self.ray.get(ready)
                self._failures[index] = 0
            except self._errors as error:
                self._replace(index, error)
            self._fill(index, n_steps)  # the worker goes on while the learner trains
        self.wait_seconds += time.perf_counter() - start
        return {**rollout, "versions": [rollout["version"]]}

    def _fill(self, index: int, n_steps: int) -> None:
        """Queue requests at worker ``index``, with the newest weights, until it has ``max_inflight``."""
        queued = sum(worker == index for worker in self._inflight.values())
        for _ in range(self.max_inflight - queued):
            request = self.workers[index].collect.remote(self._weights, self._weights_id, self._weights_version, n_steps)
            self._inflight[request] = index

    @property
    def _errors(self) -> tuple[type[Exception], ...]:
        """What a request raises when its worker died or raised, or its result was lost with its node."""
        exceptions = self.ray.exceptions
        return (exceptions.RayActorError, exceptions.RayTaskError, exceptions.ObjectLostError)

    def _replace(self, index: int, error: Exception) -> None:
        """Replace worker ``index``, which died or raised (its env, say), by a new one built and seeded as it
        was; its lost rollouts are dropped and counted in :attr:`restarts`. A worker is replaced up to
        ``max_restarts`` times in a row; its next failure raises, with the worker's own error (the env's
        exception and traceback)."""
        self._failures[index] += 1
        failures = self._failures[index]
        self.ray.kill(self.workers[index])
        self.workers[index] = self._new_worker(index)
        self._inflight = {ref: worker for ref, worker in self._inflight.items() if worker != index}
        if failures > self.max_restarts:
            # A fresh worker and count stay behind, for a later learn (not a restart of this one).
            self._failures[index] = 0
            raise RuntimeError(
                f"rollout worker {index} failed {failures} times in a row (max_restarts="
                f"{self.max_restarts}); its last error:\n{error}"
            ) from error
        self.restarts += 1

    def _gather(self, request: Callable[[int], Any]) -> list[Any]:
        """``request(index)`` of every worker, in worker order; a worker that fails is replaced
        (:meth:`_replace`) and asked again."""
        pending = {request(index): index for index in range(len(self.workers))}
        results: list[Any] = [None] * len(self.workers)
        while pending:
            ref, index = pending.popitem()
            try:
                results[index] = self.ray.get(ref)
                self._failures[index] = 0
            except self._errors as error:
                self._replace(index, error)
                pending[request(index)] = index
        return results

    # ----------------------------------------------------------------- VecEnv
    def seed(self, seed: int | None = None) -> list[int | None]:
        """Worker ``k`` seeds its ``i``-th env with ``seed + k * envs_per_worker + i``: at its start, or at the
        next :meth:`reset` if it runs already (as SB3's ``VecEnv.seed``)."""
        self._seed = seed
        self._reseed = bool(self.workers) and seed is not None
        return [None if seed is None else seed + index for index in range(self.num_envs)]

    def reset(self) -> Any:
        """Reset every worker's environments (requests still queued are dropped); the first observations
        of the ``num_envs`` columns (asynchronous mode: worker 0's; each rollout brings its worker's own)."""
        self.start()
        self._inflight.clear()
        seeds = [self._worker_seed(index) if self._reseed else None for index in range(self.n_workers)]
        self._reseed = False
        observations = self._gather(lambda index: self.workers[index].reset.remote(seeds[index]))
        return observations[0] if self.asynchronous else _concat(observations, axis=0)

    def close(self) -> None:
        for worker in self.workers:
            self.ray.kill(worker)
        self.workers = []
        self._inflight.clear()

    def step_async(self, actions: np.ndarray) -> None:
        raise NotImplementedError("WorkerPool: the workers step their own environments; see collect()")

    def step_wait(self) -> Any:
        raise NotImplementedError("WorkerPool: the workers step their own environments; see collect()")

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":  # asked by VecEnv.__init__: workers do not render
            return [None] * len(self._get_indices(indices))
        raise NotImplementedError("WorkerPool: the environments live in the workers")

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise NotImplementedError("WorkerPool: the environments live in the workers")

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        raise NotImplementedError("WorkerPool: the environments live in the workers")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * self.num_envs
