"""Optuna sampler of ImportanceSampledPG for rl-zoo3's ``-optimize`` (needs the ``zoo`` extra)."""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params

from sb3_pgx.zoo.samplers import fit_batch_size, sample_epochs_params


def sample_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's sampler signature; returns constructor arguments (through ``convert_onpolicy_params``)."""
    params = sample_epochs_params(trial)
    params["max_weight"] = trial.suggest_categorical("max_weight", [None, 2.0, 5.0, 10.0])
    params["min_ess"] = trial.suggest_categorical("min_ess", [None, 0.5, 0.7, 0.9])
    return fit_batch_size(convert_onpolicy_params(params), n_envs)
