"""Train ImportanceSampledPG on CartPole-v1 (8 envs, hyperparams/ispg.yml) and print the mean evaluation return.

    python examples/ispg_cartpole.py [--timesteps 100000] [--seed 0]

The same run through rl-zoo3: python -m sb3_pgx.zoo train --algo ispg --env CartPole-v1
"""

import argparse

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pgx import ImportanceSampledPG

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--timesteps", type=int, default=100_000)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

env = make_vec_env("CartPole-v1", n_envs=8, seed=args.seed)
model = ImportanceSampledPG(
    "MlpPolicy",
    env,
    n_steps=32,
    batch_size=256,
    n_epochs=10,
    gamma=0.98,
    gae_lambda=0.8,
    learning_rate=1e-3,
    seed=args.seed,
)
model.learn(args.timesteps)

logged = model.logger.name_to_value
print("last update:", {key: round(logged[key], 4) for key in ("train/stopped_epoch", "trust_region/ess")})
mean_return, std_return = evaluate_policy(model, Monitor(gym.make("CartPole-v1")), n_eval_episodes=10, deterministic=True)
print(f"ImportanceSampledPG on CartPole-v1 after {args.timesteps} steps:")
print(f"mean evaluation return {mean_return:.1f} +- {std_return:.1f}")
