"""rl-zoo3's ``ExperimentManager``, taught that rollout workers build their own environments.

rl-zoo3 builds the training env itself (a ``VecEnv`` with its Monitor files and wrappers) and hands
the object to the algorithm; an object cannot be shipped to Ray workers. With ``n_workers`` > 0 in
the hyperparameters, :class:`WorkersExperimentManager` hands the algorithm instead a callable that
builds one environment as rl-zoo3 builds each of its copies (the env's registered spec, the
``env_kwargs`` and the yml's ``env_wrapper``); every worker calls it ``envs_per_worker`` times. The
evaluation envs stay rl-zoo3's. It also caps a reloaded Optuna trial's ``batch_size`` at the rollout,
as our samplers do, and says which file lacks an ``atari`` entry where rl-zoo3 would raise a bare
``KeyError``. Otherwise it is rl-zoo3's ``ExperimentManager`` unchanged.
"""

import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from rl_zoo3.exp_manager import ExperimentManager

from sb3_pgx.registry import ALGORITHMS
from sb3_pgx.zoo.samplers import fit_batch_size


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

    def close(self) -> None:
        """Nothing to close (rl-zoo3 closes the training env it made before an Optuna study starts)."""


class WorkersExperimentManager(ExperimentManager):
    """rl-zoo3's ``ExperimentManager``; with ``n_workers`` > 0, the training env is a :class:`ZooEnvFactory`."""

    _loaded_trial = False  # hyperparameters from an Optuna trial (--storage --study-name --trial-id)

    def load_trial(self, storage: str, study_name: str, trial_id: int | None = None, convert: bool = True) -> dict:
        """rl-zoo3's; the sampled ``batch_size`` is then capped at the rollout once ``n_envs`` is known, as our
        samplers cap it (:func:`~sb3_pgx.zoo.samplers.fit_batch_size`) and rl-zoo3's converter cannot."""
        self._loaded_trial = convert
        return super().load_trial(storage, study_name, trial_id, convert)

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """rl-zoo3's; for an Atari id that the file has neither an entry nor an ``atari`` entry for, a ValueError."""
        try:
            return super().read_hyperparameters()
        except KeyError as error:
            if error.args != ("atari",):
                raise
            raise ValueError(
                f"{self.config} has no entry for the Atari env {self.env_name.gym_id!r} and no 'atari' entry: "
                "add one of either to a yml file of your own and pass it with --conf-file"
            ) from error

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> tuple:
        self.n_workers = hyperparams.get("n_workers", 0)
        if self.n_workers and self.continue_training:
            raise ValueError(
                f"--trained-agent {self.trained_agent} is not supported with n_workers={self.n_workers}: a loaded "
                "model trains in-process; drop n_workers to continue its training"
            )
        yml_n_envs = hyperparams.get("n_envs")
        processed = super()._preprocess_hyperparams(hyperparams)
        if self.n_workers:
            # The env columns of one update, which rl-zoo3 divides evaluation and checkpoint frequencies by.
            envs_per_worker = hyperparams.get("envs_per_worker", 1)
            self.n_envs = envs_per_worker * (1 if hyperparams.get("asynchronous", False) else self.n_workers)
            if yml_n_envs is not None and yml_n_envs != self.n_envs:
                warnings.warn(
                    f"n_envs={yml_n_envs} is replaced by the workers' env columns per update, {self.n_envs} "
                    f"(n_workers={self.n_workers}, envs_per_worker={envs_per_worker}): set envs_per_worker instead",
                    stacklevel=2,
                )
        ours = self.algo in {algorithm.name for algorithm in ALGORITHMS}
        if self._loaded_trial and ours and "n_steps" in processed[0]:
            fit_batch_size(processed[0], self.n_envs)
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
