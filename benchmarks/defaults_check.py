"""The "good defaults" check: constructor defaults only, CartPole-v1, 200k steps.

For each algorithm: ``Algo("MlpPolicy", "CartPole-v1", seed=s).learn(200_000)`` (nothing else set),
then a deterministic evaluation over 10 episodes on a fresh env. Goal: >= 475 for each of the six
(SB3's PPO reaches it with its defaults; ``--algos ppo`` adds it as the reference).

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.defaults_check --seeds 0
    python -m benchmarks.defaults_check --seeds 0 1 2 --algos vpg npg

Resumable: (algo, seed) pairs already in ``benchmarks/results/defaults_check.csv`` are skipped.
Writes that CSV and ``defaults_check.md``.
"""

import argparse
import csv
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pgx import MDPO, AdaptiveKLPPO, ImportanceSampledPG, NaturalPG, VanillaPG, VTraceA2C

RESULTS = Path(__file__).parent / "results"
ALGOS = {
    "vpg": VanillaPG,
    "ispg": ImportanceSampledPG,
    "npg": NaturalPG,
    "ppo_kl": AdaptiveKLPPO,
    "mdpo": MDPO,
    "a2c_vtrace": VTraceA2C,
    "ppo": PPO,
}
FIELDS = ["algo", "seed", "timesteps", "eval_mean", "eval_std", "solved", "train_s", "fps"]
THRESHOLD = 475.0


def run(algo: str, seed: int, timesteps: int, eval_episodes: int) -> dict:
    model = ALGOS[algo]("MlpPolicy", "CartPole-v1", seed=seed)
    start = time.perf_counter()
    model.learn(timesteps)
    train_s = time.perf_counter() - start
    eval_env = Monitor(gym.make("CartPole-v1"))
    eval_env.reset(seed=10_000 + seed)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
    return {
        "algo": algo,
        "seed": seed,
        "timesteps": model.num_timesteps,
        "eval_mean": f"{mean:.1f}",
        "eval_std": f"{std:.1f}",
        "solved": int(mean >= THRESHOLD),
        "train_s": f"{train_s:.1f}",
        "fps": f"{model.num_timesteps / train_s:.0f}",
    }


def write_md(rows: list[dict], path: Path, command: str) -> None:
    lines = [
        "# Good defaults: constructor defaults on CartPole-v1",
        "",
        f"`{command}`",
        "",
        '`Algo("MlpPolicy", "CartPole-v1", seed=s).learn(200_000)` with every other argument at its default, then a',
        f"deterministic evaluation over 10 episodes on a fresh env. Goal: >= {THRESHOLD:.0f}. One torch thread on a",
        "shared 2-core machine (FPS noisy).",
        "",
        "| algo | seeds | eval return per seed | mean | solved (>= 475) | FPS (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for algo in ALGOS:
        runs = sorted((r for r in rows if r["algo"] == algo), key=lambda r: int(r["seed"]))
        if not runs:
            continue
        evals = [float(r["eval_mean"]) for r in runs]
        solved = sum(int(r["solved"]) for r in runs)
        fps = np.mean([float(r["fps"]) for r in runs])
        lines.append(f"| {algo} | {len(runs)} | {', '.join(f'{e:.1f}' for e in evals)} | {np.mean(evals):.1f} | "
                     f"{solved}/{len(runs)} | {fps:.0f} |")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=[a for a in ALGOS if a != "ppo"], choices=list(ALGOS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--timesteps", type=int, default=200_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", default="defaults_check", help="file stem under benchmarks/results/")
    args = parser.parse_args()
    th.set_num_threads(1)
    csv_path, md_path = RESULTS / f"{args.out}.csv", RESULTS / f"{args.out}.md"
    rows = []
    if csv_path.exists():
        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
    done = {(r["algo"], int(r["seed"])) for r in rows if int(r["timesteps"]) >= args.timesteps}
    command = "OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.defaults_check --seeds " + " ".join(map(str, args.seeds))
    for seed in args.seeds:
        for algo in args.algos:
            if (algo, seed) in done:
                print(f"skip {algo} seed {seed} (done)")
                continue
            row = run(algo, seed, args.timesteps, args.eval_episodes)
            print(row, flush=True)
            rows.append(row)
            with open(csv_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            write_md(rows, md_path, command)


if __name__ == "__main__":
    main()
