"""Sample efficiency of VTraceA2C against SB3's A2C on CartPole-v1.

For each configuration and seed: train with the same ``n_envs`` and ``n_steps``, evaluate the
deterministic policy every ``--eval-freq`` steps and record the first step at which the mean
return of ``--eval-episodes`` episodes reaches ``--threshold`` (training stops there). FPS is
measured on training alone (evaluation time is subtracted).

Configurations (``--configs``):
  a2c            SB3 A2C (the baseline)
  vtrace_e1      VTraceA2C, n_epochs=1 (A2C's update; measures the FPS overhead)
  vtrace_e1_nostats  the same without the post-update diagnostics forward pass
  vtrace_e4      VTraceA2C, n_epochs=4 (batch reuse, V-trace corrected)
  none_e4        the same with correction="none" (plain reuse, no importance weights)
  vtrace_r4      VTraceA2C, replay_rollouts=4 (replay, V-trace corrected)
  none_r4        the same with correction="none"
  vtrace_e2_r2   n_epochs=2 and replay_rollouts=2

Writes benchmarks/results/vtrace_sample_efficiency.{csv,md}.

    nice -n 10 python benchmarks/vtrace_sample_efficiency.py --seeds 0 1 2 --timesteps 200000
"""

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_pgx import VTraceA2C

CONFIGS = {
    "a2c": (A2C, {}),
    "vtrace_e1": (VTraceA2C, dict(n_epochs=1)),
    "vtrace_e1_nostats": (VTraceA2C, dict(n_epochs=1, log_update_stats=False)),
    "vtrace_e4": (VTraceA2C, dict(n_epochs=4)),
    "none_e4": (VTraceA2C, dict(n_epochs=4, correction="none")),
    "vtrace_r4": (VTraceA2C, dict(replay_rollouts=4)),
    "none_r4": (VTraceA2C, dict(replay_rollouts=4, correction="none")),
    "vtrace_e2_r2": (VTraceA2C, dict(n_epochs=2, replay_rollouts=2)),
}
RESULTS = Path(__file__).resolve().parent / "results"


class FirstSuccess(BaseCallback):
    """Evaluate every ``eval_freq`` steps; stop at the first mean return >= threshold."""

    def __init__(self, eval_env, eval_freq: int, n_episodes: int, threshold: float):
        super().__init__()
        self.eval_env, self.eval_freq, self.n_episodes, self.threshold = eval_env, eval_freq, n_episodes, threshold
        self.next_eval = eval_freq
        self.first_success: int | None = None
        self.last_mean = float("nan")
        self.eval_time = 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.eval_freq
        start = time.perf_counter()
        self.last_mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True)
        self.eval_time += time.perf_counter() - start
        if self.last_mean >= self.threshold:
            self.first_success = self.num_timesteps
            return False
        return True


def run(config: str, seed: int, args: argparse.Namespace) -> dict:
    cls, kwargs = CONFIGS[config]
    env = make_vec_env("CartPole-v1", n_envs=args.n_envs, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=10_000 + seed)
    model = cls(
        "MlpPolicy",
        env,
        n_steps=args.n_steps,
        learning_rate=args.learning_rate,
        ent_coef=args.ent_coef,
        seed=seed,
        device="cpu",
        **kwargs,
    )
    callback = FirstSuccess(eval_env, args.eval_freq, args.eval_episodes, args.threshold)
    start = time.perf_counter()
    model.learn(args.timesteps, callback=callback)
    train_time = time.perf_counter() - start - callback.eval_time
    return {
        "config": config,
        "seed": seed,
        "steps_to_threshold": callback.first_success if callback.first_success is not None else "",
        "last_eval": round(float(callback.last_mean), 1),
        "timesteps_run": model.num_timesteps,
        "fps": round(model.num_timesteps / train_time, 1),
    }


def _steps(row: dict, args: argparse.Namespace) -> int:
    """Steps to the threshold; an unsolved run counts as the whole budget."""
    return row["steps_to_threshold"] if row["steps_to_threshold"] != "" else args.timesteps


def summarise(rows: list[dict], args: argparse.Namespace) -> str:
    configs = list(dict.fromkeys(row["config"] for row in rows))
    a2c = [row for row in rows if row["config"] == "a2c"]
    fps_a2c = statistics.median(row["fps"] for row in a2c) if a2c else None
    steps_a2c = statistics.median(_steps(row, args) for row in a2c) if a2c else None
    lines = [
        f"CartPole-v1, n_envs={args.n_envs}, n_steps={args.n_steps}, learning_rate={args.learning_rate}, "
        f"ent_coef={args.ent_coef}, seeds {args.seeds}, budget {args.timesteps} steps, deterministic evaluation "
        f"({args.eval_episodes} episodes) every {args.eval_freq} steps, threshold {args.threshold}. "
        "Unsolved runs count as the budget in the median.",
        "",
        "| config | solved | median steps to threshold | steps per seed | median FPS | FPS / A2C | steps / A2C |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        mine = [row for row in rows if row["config"] == config]
        median_steps = statistics.median(_steps(row, args) for row in mine)
        fps = statistics.median(row["fps"] for row in mine)
        per_seed = ", ".join(str(row["steps_to_threshold"]) if row["steps_to_threshold"] != "" else "-" for row in mine)
        solved = sum(row["steps_to_threshold"] != "" for row in mine)
        fps_ratio = f"{fps / fps_a2c:.2f}" if fps_a2c else ""
        steps_ratio = f"{median_steps / steps_a2c:.2f}" if steps_a2c else ""
        lines.append(
            f"| {config} | {solved}/{len(mine)} | {median_steps:.0f} | {per_seed} | {fps:.0f} | {fps_ratio} | {steps_ratio} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=200_000)
    default_configs = ["a2c", "vtrace_e1", "vtrace_e1_nostats", "vtrace_e4", "none_e4", "vtrace_r4", "none_r4"]
    parser.add_argument("--configs", nargs="+", default=default_configs, choices=list(CONFIGS))
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=7e-4)
    parser.add_argument("--ent-coef", type=float, default=0.0)
    parser.add_argument("--eval-freq", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair FPS on a shared machine)")
    parser.add_argument("--output", default="vtrace_sample_efficiency")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    rows = []
    # Seeds outermost and configurations interleaved, so that machine-load drifts hit all alike.
    for seed in args.seeds:
        for config in args.configs:
            row = run(config, seed, args)
            print(row, flush=True)
            rows.append(row)

    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{args.output}.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = summarise(sorted(rows, key=lambda row: args.configs.index(row["config"])), args)
    (RESULTS / f"{args.output}.md").write_text("# VTraceA2C sample efficiency\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
