"""Optuna sampler of MDPO for rl-zoo3's ``-optimize`` (needs the ``zoo`` extra): minibatch steps,
from a few (the authors' regime) to PPO's hundreds."""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params

from sb3_pgx.zoo.samplers import fit_batch_size, sample_common_params


def sample_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's sampler signature; returns constructor arguments (through ``convert_onpolicy_params``)."""
    params = sample_common_params(trial)
    params["batch_size_pow"] = trial.suggest_int("batch_size_pow", 5, 9)
    params["n_sgd_steps"] = trial.suggest_int("n_sgd_steps", 5, 1000, log=True)
    params["min_step_size"] = trial.suggest_float("min_step_size", 0.01, 0.5, log=True)
    params["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    params["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 5.0)
    return fit_batch_size(convert_onpolicy_params(params), n_envs)
