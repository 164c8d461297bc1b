"""Train VanillaPG on CartPole-v1 and print the trained policy's mean evaluation return.

python examples/vpg_cartpole.py [--timesteps 200000] [--seed 0]
"""

import argparse

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pgx import VanillaPG

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--timesteps", type=int, default=200_000)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

model = VanillaPG("MlpPolicy", "CartPole-v1", seed=args.seed, verbose=0)
model.learn(args.timesteps, progress_bar=False)

mean_return, std_return = evaluate_policy(model, Monitor(gym.make("CartPole-v1")), n_eval_episodes=10, deterministic=True)
print(f"VanillaPG on CartPole-v1 after {args.timesteps} steps: mean evaluation return {mean_return:.1f} +- {std_return:.1f}")
