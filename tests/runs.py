"""The models and runs the tests share: rl-zoo3's from our hyperparams/*.yml, A2C beside VTraceA2C,
the evaluations of learning tests."""

import yaml
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_pgx import VTraceA2C
from sb3_pgx.registry import get
from sb3_pgx.zoo import hyperparams_file

#: Seed of every evaluation env, apart from the training seeds.
EVAL_SEED = 100


def zoo_settings(algo: str, env_id: str = "CartPole-v1") -> tuple[dict, int, int]:
    """``hyperparams/<algo>.yml``'s entry for ``env_id`` (constant values only): the constructor arguments
    but the policy, ``n_envs`` and ``n_timesteps``."""
    entry = yaml.safe_load(hyperparams_file(algo).read_text())[env_id]
    kwargs = {key: value for key, value in entry.items() if key not in ("policy", "n_envs", "n_timesteps")}
    return kwargs, entry.get("n_envs", 1), int(float(entry["n_timesteps"]))


def zoo_model(algo: str, env_id: str = "CartPole-v1", seed: int = 0, **overrides):
    """The model (MlpPolicy) rl-zoo3 trains from ``hyperparams/<algo>.yml`` on ``env_id``, ``overrides`` on top
    of the yml's arguments, and the yml's budget."""
    kwargs, n_envs, budget = zoo_settings(algo, env_id)
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    return get(algo).cls("MlpPolicy", env, seed=seed, device="cpu", **{**kwargs, **overrides}), budget


def a2c_and_vtrace_weights(n_envs: int, timesteps: int, **kwargs) -> tuple[dict, dict]:
    """The policy weights of SB3's A2C and of VTraceA2C, each trained ``timesteps`` on CartPole-v1
    (``n_envs`` environments, seed 3) with the same ``kwargs``: equal where VTraceA2C reduces to A2C."""
    models = []
    for cls in (A2C, VTraceA2C):
        models.append(cls("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs, seed=3), **kwargs))
        models[-1].learn(timesteps)
    return models[0].policy.state_dict(), models[1].policy.state_dict()


def evaluation_return(model, env_id: str = "CartPole-v1", episodes: int = 10) -> float:
    """Mean deterministic return over ``episodes`` on a fresh ``env_id`` (seed ``EVAL_SEED``)."""
    return evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=EVAL_SEED), n_eval_episodes=episodes)[0]


def stop_when_solved(eval_freq: int, episodes: int = 10, threshold: float = 475, env_id: str = "CartPole-v1"):
    """An ``EvalCallback``: deterministic ``episodes``-episode evaluations on ``env_id`` (seed ``EVAL_SEED``)
    every ``eval_freq`` steps of the vectorised env; training stops at the first mean return >=
    ``threshold``. Its ``best_mean_reward`` is what a learning test checks."""
    return EvalCallback(
        make_vec_env(env_id, n_envs=1, seed=EVAL_SEED),
        callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=threshold, verbose=0),
        n_eval_episodes=episodes,
        eval_freq=eval_freq,
        deterministic=True,
        verbose=0,
    )
