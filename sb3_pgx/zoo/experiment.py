"""rl-zoo3's ``ExperimentManager``, taught that rollout workers build their own environments.

rl-zoo3 builds the training env itself (a ``VecEnv`` with its Monitor files and wrappers) and hands
the object to the algorithm; an object cannot be shipped to Ray workers. With ``n_workers`` > 0 in
the hyperparameters, :class:`WorkersExperimentManager` hands the algorithm instead a callable that
builds one environment as rl-zoo3 builds each of its copies (the env's registered spec, the
``env_kwargs`` and the yml's ``env_wrapper``); every worker calls it ``envs_per_worker`` times. The
evaluation envs stay rl-zoo3's. Without workers it is rl-zoo3's ``ExperimentManager`` unchanged.
"""

from collections.abc import Callable
from typing import Any

import gymnasium as gym
from rl_zoo3.exp_manager import ExperimentManager


class ZooEnvFactory:
    """Builds one environment as rl-zoo3's ``create_envs`` builds each copy, before the Monitor SB3 adds.

    It carries the env's spaces, which rl-zoo3 reads off the training env (for action noise).

    :param spec: the env's registered spec
    :param env_kwargs: arguments of ``spec.make``
    :param wrapper: the yml's ``env_wrapper`` (None: none)
    """

    def __init__(self, spec: gym.envs.registration.EnvSpec, env_kwargs: dict[str, Any], wrapper: Callable | None):
        self.spec, self.env_kwargs, self.wrapper = spec, env_kwargs, wrapper
        probe = self()
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        probe.close()

    def __call__(self) -> gym.Env:
        env = self.spec.make(**self.env_kwargs)
        return env if self.wrapper is None else self.wrapper(env)


class WorkersExperimentManager(ExperimentManager):
    """rl-zoo3's ``ExperimentManager``; with ``n_workers`` > 0, the training env is a :class:`ZooEnvFactory`."""

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> tuple:
        self.n_workers = hyperparams.get("n_workers", 0)
        processed = super()._preprocess_hyperparams(hyperparams)
        if self.n_workers:
            # The env columns of one update, which rl-zoo3 divides evaluation and checkpoint frequencies by.
            envs_per_worker = hyperparams.get("envs_per_worker", 1)
            self.n_envs = envs_per_worker * (1 if hyperparams.get("asynchronous", False) else self.n_workers)
        return processed

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> Any:
        if eval_env or not getattr(self, "n_workers", 0):
            return super().create_envs(n_envs, eval_env=eval_env, no_log=no_log)
        # VecEnv wrappers would have to run in the learner on data the workers already collected.
        used = {"normalize": self.normalize, "frame_stack": self.frame_stack, "vec_env_wrapper": self.vec_env_wrapper}
        for key, value in used.items():
            if value:
                raise ValueError(
                    f"{key}={value!r} is not supported with n_workers={self.n_workers}: VecEnv wrappers do not reach "
                    "the workers' environments; remove it, or train without workers"
                )
        return ZooEnvFactory(gym.spec(self.env_name.gym_id), dict(self.env_kwargs or {}), self.env_wrapper)
