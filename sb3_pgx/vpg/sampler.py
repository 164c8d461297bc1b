"""Optuna sampler of VanillaPG for rl-zoo3's ``-optimize`` (needs the ``zoo`` extra)."""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params

from sb3_pgx.zoo.samplers import sample_common_params


def sample_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's sampler signature; returns constructor arguments (through ``convert_onpolicy_params``)."""
    params = sample_common_params(trial)
    params["n_critic_updates"] = trial.suggest_int("n_critic_updates", 1, 20)
    params["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    params["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 5.0)
    return convert_onpolicy_params(params)
