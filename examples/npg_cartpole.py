"""NaturalPG on CartPole-v1: train with the default hyperparameters, then evaluate deterministically.

python examples/npg_cartpole.py --timesteps 50000
"""

import argparse

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pgx import NaturalPG


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timesteps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # One natural-gradient step per 1024-step batch, each on a KL radius of 0.02.
    model = NaturalPG("MlpPolicy", "CartPole-v1", target_kl=0.02, seed=args.seed, verbose=1)
    model.learn(total_timesteps=args.timesteps)

    mean_return, std_return = evaluate_policy(model, Monitor(gym.make("CartPole-v1")), n_eval_episodes=10, deterministic=True)
    print(f"deterministic return over 10 episodes: {mean_return:.1f} +/- {std_return:.1f}")


if __name__ == "__main__":
    main()
