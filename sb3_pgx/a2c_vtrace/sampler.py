"""Optuna sampler of VTraceA2C for rl-zoo3's ``-optimize`` (needs the ``zoo`` extra): A2C's batch
(short rollouts) plus reuse, replay and the V-trace truncations."""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params

from sb3_pgx.zoo.samplers import sample_common_params


def sample_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's sampler signature; returns constructor arguments (through ``convert_onpolicy_params``)."""
    # gae_lambda is V-trace's trace decay (c_t = lambda * min(c_bar, w_t)).
    params = sample_common_params(trial)
    params["n_epochs"] = trial.suggest_int("n_epochs", 1, 8)
    params["replay_rollouts"] = trial.suggest_int("replay_rollouts", 0, 8)
    params["rho_bar"] = trial.suggest_categorical("rho_bar", [1.0, 2.0])
    params["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    params["vf_coef"] = trial.suggest_float("vf_coef", 0.1, 1.0)
    params["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 5.0)
    params["use_rms_prop"] = trial.suggest_categorical("use_rms_prop", [True, False])
    return convert_onpolicy_params(params)
