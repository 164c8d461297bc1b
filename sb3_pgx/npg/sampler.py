"""Optuna sampler of NaturalPG for rl-zoo3's ``-optimize`` (needs the ``zoo`` extra); ``learning_rate`` is the critic's."""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params

from sb3_pgx.zoo.samplers import sample_common_params


def sample_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's sampler signature; returns constructor arguments (through ``convert_onpolicy_params``)."""
    params = sample_common_params(trial)
    params["target_kl"] = trial.suggest_float("target_kl", 0.001, 0.1, log=True)
    params["cg_max_steps"] = trial.suggest_int("cg_max_steps", 5, 30)
    params["cg_damping"] = trial.suggest_float("cg_damping", 1e-4, 0.5, log=True)
    params["n_critic_updates"] = trial.suggest_int("n_critic_updates", 5, 30)
    params["batch_size_pow"] = trial.suggest_int("batch_size_pow", 5, 9)  # critic minibatch
    return convert_onpolicy_params(params)
