"""Train the importance-sampled family on CartPole-v1 (8 envs, the settings of hyperparams/<algo>.yml)
and print each one's own figure of its last update and its mean evaluation return.

The three share one training loop (epochs of minibatch steps on an importance-sampled surrogate)
and differ in what keeps the new policy near the data: ImportanceSampledPG stops the epochs when
the effective sample size drops, AdaptiveKLPPO adapts a KL penalty's coefficient to a KL target,
MDPO anneals the step size of a reverse-KL penalty.

    python examples/surrogate_family_cartpole.py [--algos ispg ppo_kl mdpo] [--timesteps 100000] [--seed 0]

The same runs through rl-zoo3: python -m sb3_pgx.zoo train --algo ispg --env CartPole-v1
"""

import argparse

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pgx import MDPO, AdaptiveKLPPO, ImportanceSampledPG

BATCH = dict(n_steps=32, gamma=0.98, gae_lambda=0.8, learning_rate=1e-3)
#: zoo name -> (class, its settings beyond BATCH, the logged figures that show its mechanism)
FAMILY = {
    "ispg": (ImportanceSampledPG, dict(batch_size=256, n_epochs=10), ("train/stopped_epoch", "trust_region/ess")),
    "ppo_kl": (AdaptiveKLPPO, dict(batch_size=256, n_epochs=20), ("train/kl_coef", "trust_region/kl")),
    "mdpo": (MDPO, dict(batch_size=None, n_sgd_steps=20), ("train/step_size", "trust_region/kl")),
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--algos", nargs="+", choices=list(FAMILY), default=list(FAMILY))
parser.add_argument("--timesteps", type=int, default=100_000)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

for algo in args.algos:
    cls, settings, figures = FAMILY[algo]
    model = cls("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=args.seed), **BATCH, **settings, seed=args.seed)
    model.learn(args.timesteps)
    logged = model.logger.name_to_value
    eval_env = Monitor(gym.make("CartPole-v1"))
    mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    print(f"{cls.__name__} on CartPole-v1 after {args.timesteps} steps:")
    print("  last update:", {key: round(logged[key], 4) for key in figures})
    print(f"  mean evaluation return {mean_return:.1f} +- {std_return:.1f}")
