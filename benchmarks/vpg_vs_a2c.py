"""VanillaPG and SB3's A2C side by side on CartPole-v1 (same n_envs and n_steps).

    python -m benchmarks.vpg_vs_a2c --seeds 3 --timesteps 200000

For each seed, the two algorithms run one after the other (alternating, so that machine load
hits both alike). Reported per run: final deterministic evaluation over 10 episodes,
training FPS, and per algorithm the mean +- std and the FPS ratio VanillaPG / A2C.
Writes benchmarks/results/vpg_vs_a2c.csv and .md.
"""

import argparse
import csv
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pgx import VanillaPG

RESULTS = Path(__file__).parent / "results"


def run(algo: str, seed: int, args: argparse.Namespace) -> dict:
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=seed)
    cls = {"VanillaPG": VanillaPG, "A2C": A2C}[algo]
    model = cls("MlpPolicy", env, n_steps=args.n_steps, seed=seed, device="cpu")
    start = time.perf_counter()
    model.learn(args.timesteps)
    seconds = time.perf_counter() - start
    mean_return, std_return = evaluate_policy(model, Monitor(gym.make(args.env)), n_eval_episodes=10, deterministic=True)
    return dict(
        algo=algo,
        seed=seed,
        env=args.env,
        n_envs=args.n_envs,
        n_steps=args.n_steps,
        timesteps=args.timesteps,
        eval_mean=round(float(mean_return), 1),
        eval_std=round(float(std_return), 1),
        fps=round(args.timesteps / seconds, 1),
        solved=bool(mean_return >= 475),
    )


def table(rows: list[dict]) -> str:
    lines = [
        "| algo | eval return (mean +- std over seeds) | solved (>= 475) | FPS (mean) | FPS ratio vs A2C |",
        "|---|---|---|---|---|",
    ]
    a2c_fps = np.mean([r["fps"] for r in rows if r["algo"] == "A2C"])
    for algo in ("VanillaPG", "A2C"):
        mine = [r for r in rows if r["algo"] == algo]
        returns = [r["eval_mean"] for r in mine]
        fps = np.mean([r["fps"] for r in mine])
        lines.append(
            f"| {algo} | {np.mean(returns):.1f} +- {np.std(returns):.1f} | {sum(r['solved'] for r in mine)}/{len(mine)} "
            f"| {fps:.0f} | {fps / a2c_fps:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=200_000)
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--n-steps", type=int, default=256)
    parser.add_argument("--out", default="vpg_vs_a2c")
    args = parser.parse_args()
    th.set_num_threads(1)

    rows = []
    for seed in range(args.seeds):
        for algo in ("VanillaPG", "A2C"):
            rows.append(run(algo, seed, args))
            print(rows[-1], flush=True)

    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{args.out}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = (
        f"{args.env}, {args.timesteps} steps, n_envs={args.n_envs}, n_steps={args.n_steps}, "
        f"{args.seeds} seeds, 1 torch thread; other settings at each algorithm's defaults.\n\n"
    )
    (RESULTS / f"{args.out}.md").write_text(header + table(rows) + "\n")
    print(header + table(rows))


if __name__ == "__main__":
    main()
