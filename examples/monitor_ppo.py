"""Add the trust-region monitor to a stock Stable-Baselines3 PPO run.

After every update the monitor evaluates the updated policy on the batch the update used
and logs ``trust_region/ess``, ``trust_region/kl``, ``trust_region/clip_fraction``, ... next to
PPO's own ``train/`` figures (``train/clip_fraction`` and ``train/approx_kl`` there are PPO's
minibatch averages during the epochs, another quantity). It runs beside EvalCallback in a
CallbackList, writes its history to a CSV file and the run ends with a plot of ESS, KL and clip
fraction.

    python examples/monitor_ppo.py --timesteps 20000 --out runs/monitor_ppo
"""

import argparse
import os

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList, EvalCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_pgx import TrustRegionMonitorCallback
from sb3_pgx.plot_monitor import plot_monitor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/monitor_ppo", help="folder for the logs, CSV and plot")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    env = make_vec_env(args.env, n_envs=4, seed=args.seed)
    model = PPO("MlpPolicy", env, n_steps=512, seed=args.seed, verbose=1)

    monitor = TrustRegionMonitorCallback(
        min_ess=0.5,  # warn when the update leaves less than half the batch's worth of data
        max_kl=0.05,  # ... or moves the policy more than this (exact KL)
        action="warn",  # "stop" ends training right after the offending update instead
        csv_path=os.path.join(args.out, "monitor.csv"),
    )
    evaluation = EvalCallback(
        make_vec_env(args.env, n_envs=1, seed=args.seed + 100), eval_freq=2_500, n_eval_episodes=3, verbose=0
    )
    model.learn(args.timesteps, callback=CallbackList([monitor, evaluation]))

    last = monitor.history[-1]
    print(
        f"{last['update']} updates; last one: ESS/N={last['ess']:.3f}, KL={last['kl']:.2e}, clip={last['clip_fraction']:.3f}"
    )
    plot_monitor(monitor, os.path.join(args.out, "monitor.png"), min_ess=0.5, max_kl=0.05)
    print(f"wrote {args.out}/monitor.csv and {args.out}/monitor.png")


if __name__ == "__main__":
    main()
