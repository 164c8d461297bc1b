"""Cost of the trust-region monitor: an algorithm at its default settings with and without it.

``--algo`` picks stock SB3 PPO on CartPole-v1, sb3-contrib's MaskablePPO on its
``InvalidActionEnvDiscrete`` (10 actions, 5 of them masked at each step; 4 envs) or
RecurrentPPO (``MlpLstmPolicy``) on CartPole-v1, each with the library's default
hyperparameters. Each pair trains the algorithm twice with the same seed, once plain and
once with ``TrustRegionMonitorCallback`` (all figures, exact KL); the order alternates
between pairs so that neither variant always runs first. Reported per pair and as medians:

- wall-time ratio (monitor / plain) of ``learn()``
- CPU-time ratio (process time; less sensitive to other load on a shared machine)
- the share of the monitored run spent inside the monitor's own hooks (timed directly)

Results: ``benchmarks/results/monitor_overhead.csv`` and ``.md`` for PPO,
``monitor_overhead_<algo>.csv`` and ``.md`` for the others.

    python benchmarks/monitor_overhead.py --pairs 3 --timesteps 20000 [--algo maskable_ppo]
"""

import argparse
import csv
import os
import platform
import statistics
import time

import torch as th
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_pgx import TrustRegionMonitorCallback

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: --algo -> (how the run is described, a function seed -> model at the library's defaults)
ALGOS = {
    "ppo": (
        "Stock SB3 PPO (default hyperparameters: n_steps 2048, batch 64, 10 epochs) on CartPole-v1",
        lambda seed: PPO("MlpPolicy", "CartPole-v1", seed=seed, device="cpu"),
    ),
    "maskable_ppo": (
        "sb3-contrib MaskablePPO (default hyperparameters: n_steps 2048, batch 64, 10 epochs) on "
        "InvalidActionEnvDiscrete(dim=10, n_invalid_actions=5), 4 envs",
        lambda seed: MaskablePPO(
            "MlpPolicy",
            make_vec_env(lambda: InvalidActionEnvDiscrete(dim=10, n_invalid_actions=5), n_envs=4, seed=seed),
            seed=seed,
            device="cpu",
        ),
    ),
    "recurrent_ppo": (
        "sb3-contrib RecurrentPPO (MlpLstmPolicy, default hyperparameters: n_steps 128, batch 128, 10 epochs) "
        "on CartPole-v1",
        lambda seed: RecurrentPPO("MlpLstmPolicy", "CartPole-v1", seed=seed, device="cpu"),
    ),
}


class TimedMonitor(TrustRegionMonitorCallback):
    """The monitor, with the time spent in its per-update hooks added up."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hook_seconds = 0.0

    def _on_rollout_end(self) -> None:
        start = time.perf_counter()
        super()._on_rollout_end()
        self.hook_seconds += time.perf_counter() - start

    def _measure(self) -> None:
        start = time.perf_counter()
        super()._measure()
        self.hook_seconds += time.perf_counter() - start


def train(algo: str, timesteps: int, seed: int, monitored: bool) -> dict[str, float]:
    model = ALGOS[algo][1](seed)
    monitor = TimedMonitor() if monitored else None
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(timesteps, callback=monitor)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "hook_s": monitor.hook_seconds if monitor else 0.0,
        "updates": len(monitor.history) if monitor else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(ALGOS), default="ppo", help="algorithm to measure")
    parser.add_argument("--pairs", type=int, default=3, help="number of (plain, monitored) pairs")
    parser.add_argument("--timesteps", type=int, default=20_000, help="training budget of each run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first pair (pair i uses seed + i)")
    parser.add_argument("--out", default=RESULTS, help="folder for the result files")
    args = parser.parse_args()
    th.set_num_threads(1)  # one core per run: steadier timings on a shared machine

    rows = []
    for pair in range(args.pairs):
        seed = args.seed + pair
        order = (False, True) if pair % 2 == 0 else (True, False)
        runs = {monitored: train(args.algo, args.timesteps, seed, monitored) for monitored in order}
        plain, monitored = runs[False], runs[True]
        row = {
            "pair": pair,
            "seed": seed,
            "first": "monitor" if order[0] else "plain",
            "plain_wall_s": plain["wall_s"],
            "monitor_wall_s": monitored["wall_s"],
            "wall_ratio": monitored["wall_s"] / plain["wall_s"],
            "plain_cpu_s": plain["cpu_s"],
            "monitor_cpu_s": monitored["cpu_s"],
            "cpu_ratio": monitored["cpu_s"] / plain["cpu_s"],
            "monitor_hook_s": monitored["hook_s"],
            "hook_share": monitored["hook_s"] / monitored["wall_s"],
            "updates": monitored["updates"],
        }
        rows.append(row)
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "monitor_overhead" if args.algo == "ppo" else f"monitor_overhead_{args.algo}")
    with open(f"{stem}.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    median = {key: statistics.median(row[key] for row in rows) for key in ("wall_ratio", "cpu_ratio", "hook_share")}
    lines = [
        f"# Trust-region monitor overhead: {args.algo}",
        "",
        f"`python benchmarks/monitor_overhead.py --algo {args.algo} --pairs {args.pairs} --timesteps {args.timesteps}`",
        "",
        f"{ALGOS[args.algo][0]}, {args.timesteps} steps per run, {args.pairs} pairs with the same seed, order alternating; "
        f"TrustRegionMonitorCallback with all figures and exact KL. torch threads: 1. "
        f"Python {platform.python_version()}, torch {th.__version__}.",
        "",
        "| pair | seed | first | plain wall s | monitor wall s | wall ratio | plain CPU s | monitor CPU s | CPU ratio "
        "| time in monitor hooks s | share of run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['pair']} | {row['seed']} | {row['first']} | {row['plain_wall_s']:.2f} | {row['monitor_wall_s']:.2f} "
            f"| {row['wall_ratio']:.3f} | {row['plain_cpu_s']:.2f} | {row['monitor_cpu_s']:.2f} | {row['cpu_ratio']:.3f} "
            f"| {row['monitor_hook_s']:.3f} | {100 * row['hook_share']:.2f}% |"
        )
    lines += [
        "",
        f"**Median wall-time ratio (monitor / plain): {median['wall_ratio']:.3f}** "
        f"({100 * (median['wall_ratio'] - 1):+.1f}%); median CPU-time ratio {median['cpu_ratio']:.3f}; "
        f"median share of the monitored run spent in the monitor's hooks {100 * median['hook_share']:.2f}%. "
        "Goal: under 5% extra.",
        "",
    ]
    with open(f"{stem}.md", "w") as file:
        file.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
