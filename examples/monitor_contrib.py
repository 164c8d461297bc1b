"""The trust-region monitor on sb3-contrib's MaskablePPO and RecurrentPPO.

MaskablePPO: the figures are those of the *masked* distribution the agent acts with (the
masks are read from the rollout buffer). RecurrentPPO: the updated policy is re-run over
each environment's sequence from the LSTM state stored at the rollout's start, so old and
new probabilities condition on the same history. Both runs write their history to a CSV
file, and one plot shows them side by side.

    python examples/monitor_contrib.py --timesteps 20000 --out runs/monitor_contrib
"""

import argparse
import os

from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete
from stable_baselines3.common.env_util import make_vec_env

from sb3_pgx import TrustRegionMonitorCallback
from sb3_pgx.plot_monitor import plot_monitor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/monitor_contrib", help="folder for the CSV files and the plot")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # 10 actions, 5 of them masked at every step (the env's action_masks() says which).
    masked_env = make_vec_env(lambda: InvalidActionEnvDiscrete(dim=10, n_invalid_actions=5), n_envs=2, seed=args.seed)
    models = {
        "maskable_ppo": MaskablePPO("MlpPolicy", masked_env, n_steps=1024, seed=args.seed),
        "recurrent_ppo": RecurrentPPO("MlpLstmPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=args.seed), seed=args.seed),
    }
    paths = []
    for name, model in models.items():
        path = os.path.join(args.out, f"{name}.csv")
        monitor = TrustRegionMonitorCallback(min_ess=0.5, max_kl=0.05, action="warn", csv_path=path)
        model.learn(args.timesteps, callback=monitor)
        last = monitor.history[-1]
        print(f"{name}: {last['update']} updates; last: ESS/N={last['ess']:.3f}, KL={last['kl']:.2e}")
        paths.append(path)

    plot_monitor(paths, os.path.join(args.out, "monitor.png"), min_ess=0.5, max_kl=0.05)
    print(f"wrote {', '.join(paths)} and {args.out}/monitor.png")


if __name__ == "__main__":
    main()
