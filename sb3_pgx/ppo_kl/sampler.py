"""Optuna sampler of AdaptiveKLPPO for rl-zoo3's ``-optimize`` (needs the ``zoo`` extra)."""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params

from sb3_pgx.zoo.samplers import fit_batch_size, sample_epochs_params


def sample_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's sampler signature; returns constructor arguments (through ``convert_onpolicy_params``)."""
    params = sample_epochs_params(trial)
    params["target_kl"] = trial.suggest_float("target_kl", 0.001, 0.05, log=True)
    params["kl_coef"] = trial.suggest_float("kl_coef", 0.1, 10.0, log=True)
    return fit_batch_size(convert_onpolicy_params(params), n_envs)
