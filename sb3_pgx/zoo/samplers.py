"""What the Optuna samplers of rl-zoo3's ``-optimize`` share; each algorithm's own is
``sample_params`` in ``sb3_pgx/<name>/sampler.py``.

Each sampler returns ``convert_onpolicy_params(sampled)`` like rl-zoo3's own samplers, so the names
it suggests (``one_minus_gamma``, ``n_steps_pow``, ``net_arch``, ...) are the ones rl-zoo3's
converter turns back into constructor arguments when a trial is reloaded.
"""

from typing import Any

import optuna


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


def sample_epochs_params(trial: optuna.Trial) -> dict[str, Any]:
    """What the importance-sampled family shares on top of the common part: minibatches, epochs, losses."""
    params = sample_common_params(trial)
    params["batch_size_pow"] = trial.suggest_int("batch_size_pow", 5, 9)
    params["n_epochs"] = trial.suggest_int("n_epochs", 1, 20)
    params["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    params["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 5.0)
    return params
