"""Optuna samplers for rl-zoo3's ``-optimize``, one per algorithm.

Each returns ``convert_onpolicy_params(sampled)`` like rl-zoo3's own samplers, so the names
it suggests (``one_minus_gamma``, ``n_steps_pow``, ``net_arch``, ...) are the ones rl-zoo3's
converter turns back into constructor arguments when a trial is reloaded.
"""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params


def sample_common_params(trial: optuna.Trial, gae_lambda_range: tuple[float, float] = (0.0001, 0.1)) -> dict[str, Any]:
    """What every on-policy algorithm of the suite shares: batch, discount, GAE, learning rate, network."""
    params = {
        "n_steps_pow": trial.suggest_int("n_steps_pow", 5, 12),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", *gae_lambda_range, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 0.01, log=True),
        "net_arch": trial.suggest_categorical("net_arch", ["tiny", "small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    trial.set_user_attr("gamma", 1 - params["one_minus_gamma"])
    trial.set_user_attr("n_steps", 2 ** params["n_steps_pow"])
    return params


def fit_batch_size(params: dict[str, Any], n_envs: int) -> dict[str, Any]:
    """Cap a sampled minibatch size at the rollout, ``n_steps * n_envs``: the importance-sampled
    family refuses a larger one, and the two are sampled independently (rl-zoo3 leaves this as a TODO)."""
    if params.get("batch_size") is not None:
        params["batch_size"] = min(params["batch_size"], params["n_steps"] * n_envs)
    return params


def sample_vpg_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for VanillaPG."""
    params = sample_common_params(trial)
    params["n_critic_updates"] = trial.suggest_int("n_critic_updates", 1, 20)
    params["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    params["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 5.0)
    return convert_onpolicy_params(params)


def sample_npg_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for NaturalPG (``learning_rate`` is the critic's)."""
    params = sample_common_params(trial)
    params["target_kl"] = trial.suggest_float("target_kl", 0.001, 0.1, log=True)
    params["cg_max_steps"] = trial.suggest_int("cg_max_steps", 5, 30)
    params["cg_damping"] = trial.suggest_float("cg_damping", 1e-4, 0.5, log=True)
    params["n_critic_updates"] = trial.suggest_int("n_critic_updates", 5, 30)
    params["batch_size_pow"] = trial.suggest_int("batch_size_pow", 5, 9)  # critic minibatch
    return convert_onpolicy_params(params)


def sample_a2c_vtrace_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for VTraceA2C: A2C's batch (short rollouts) plus reuse, replay and the V-trace truncations."""
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


def _sample_epochs_params(trial: optuna.Trial) -> dict[str, Any]:
    """What the importance-sampled family shares on top of the common part: minibatches, epochs, losses."""
    params = sample_common_params(trial)
    params["batch_size_pow"] = trial.suggest_int("batch_size_pow", 5, 9)
    params["n_epochs"] = trial.suggest_int("n_epochs", 1, 20)
    params["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    params["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 5.0)
    return params


def sample_ispg_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for ImportanceSampledPG."""
    params = _sample_epochs_params(trial)
    params["max_weight"] = trial.suggest_categorical("max_weight", [None, 2.0, 5.0, 10.0])
    params["min_ess"] = trial.suggest_categorical("min_ess", [None, 0.5, 0.7, 0.9])
    return fit_batch_size(convert_onpolicy_params(params), n_envs)


def sample_ppo_kl_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for AdaptiveKLPPO."""
    params = _sample_epochs_params(trial)
    params["target_kl"] = trial.suggest_float("target_kl", 0.001, 0.05, log=True)
    params["kl_coef"] = trial.suggest_float("kl_coef", 0.1, 10.0, log=True)
    return fit_batch_size(convert_onpolicy_params(params), n_envs)


def sample_mdpo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Sampler for MDPO: minibatch steps, from a few (the authors' regime) to PPO's hundreds."""
    params = sample_common_params(trial)
    params["batch_size_pow"] = trial.suggest_int("batch_size_pow", 5, 9)
    params["n_sgd_steps"] = trial.suggest_int("n_sgd_steps", 5, 1000, log=True)
    params["min_step_size"] = trial.suggest_float("min_step_size", 0.01, 0.5, log=True)
    params["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    params["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 5.0)
    return fit_batch_size(convert_onpolicy_params(params), n_envs)
