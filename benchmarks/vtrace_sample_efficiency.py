"""Sample efficiency of VTraceA2C against SB3's A2C on CartPole-v1 (``--env`` for another).

For each configuration and seed: train with the same ``n_envs`` and ``n_steps``, evaluate the
deterministic policy every ``--eval-freq`` steps and record the first step at which the mean
return of ``--eval-episodes`` episodes reaches ``--threshold`` (training stops there
unless ``--no-early-stop``). FPS is
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
  {vtrace,none}_eE[_rR]  any other n_epochs=E / replay_rollouts=R, with or without the correction
                 (e.g. vtrace_e8_r16 and none_e8_r16)

Writes benchmarks/results/vtrace_sample_efficiency.{csv,md} (``--output`` to change the name).

Stale-data regime (an ablation): ``--no-early-stop`` trains for the whole budget and
reports, besides the first step at the threshold, the return of a final deterministic evaluation
(``--final-eval-episodes``) and how stale the reused data was: the mean over updates of
``train/ess_replay_mean`` (normalised ESS of the replayed rollouts' weights after each update),
``trust_region/ess`` (the same for the new rollout) and ``train/rho_truncated_fraction``.

    nice -n 10 python benchmarks/vtrace_sample_efficiency.py --seeds 0 1 2 --timesteps 200000
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vtrace_sample_efficiency.py --no-early-stop --seeds 0 1 2 3 4 \\
        --timesteps 100000 --eval-freq 5000 --learning-rate 3e-3 \\
        --configs a2c vtrace_e1_r16 none_e1_r16 vtrace_e16 none_e16 --output vtrace_stale_data
"""

import argparse
import csv
import math
import re
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
_PATTERN = re.compile(r"(vtrace|none)_e(\d+)(?:_r(\d+))?")
THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0}


def config_spec(name: str) -> tuple[type, dict]:
    """The algorithm class and keyword arguments of a configuration name."""
    if name in CONFIGS:
        return CONFIGS[name]
    match = _PATTERN.fullmatch(name)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"unknown configuration {name!r}: expected one of {list(CONFIGS)} or (vtrace|none)_e<E>[_r<R>]"
        )
    correction, epochs, replay = match.groups()
    return VTraceA2C, dict(n_epochs=int(epochs), replay_rollouts=int(replay or 0), correction=correction)


def config_name(name: str) -> str:
    config_spec(name)  # raises on a bad name
    return name


class Staleness(BaseCallback):
    """Collect the staleness figures the last ``train()`` logged (read before the next rollout).

    SB3 dumps the logger before ``train()``, so at the next ``on_rollout_start`` the logger
    still holds what ``train()`` recorded; ``_n_updates`` tells a new update from an old one.
    """

    KEYS = ("train/ess_replay_mean", "trust_region/ess", "train/rho_truncated_fraction", "trust_region/approx_kl")

    def __init__(self):
        super().__init__()
        self.values: dict[str, list[float]] = {key: [] for key in self.KEYS}
        self.seen_updates = 0

    def _read(self) -> None:
        n_updates = getattr(self.model, "_n_updates", 0)
        if n_updates == self.seen_updates:
            return
        self.seen_updates = n_updates
        for key in self.KEYS:
            if key in self.model.logger.name_to_value:
                self.values[key].append(float(self.model.logger.name_to_value[key]))

    def _on_rollout_start(self) -> None:
        self._read()

    def _on_training_end(self) -> None:
        self._read()

    def _on_step(self) -> bool:
        return True

    def mean(self, key: str) -> float | str:
        return round(statistics.fmean(self.values[key]), 4) if self.values[key] else ""


class FirstSuccess(BaseCallback):
    """Evaluate every ``eval_freq`` steps; stop at the first mean return >= threshold."""

    def __init__(self, eval_env, eval_freq: int, n_episodes: int, threshold: float, stop: bool = True):
        super().__init__()
        self.eval_env, self.eval_freq, self.n_episodes, self.threshold = eval_env, eval_freq, n_episodes, threshold
        self.stop = stop
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
        if self.last_mean >= self.threshold and self.first_success is None:
            self.first_success = self.num_timesteps
            return not self.stop
        return True


def run(config: str, seed: int, args: argparse.Namespace) -> dict:
    cls, kwargs = config_spec(config)
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=seed)
    eval_env = make_vec_env(args.env, n_envs=1, seed=10_000 + seed)
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
    callback = FirstSuccess(eval_env, args.eval_freq, args.eval_episodes, args.threshold, stop=not args.no_early_stop)
    staleness = Staleness()
    start = time.perf_counter()
    model.learn(args.timesteps, callback=[callback, staleness])
    train_time = time.perf_counter() - start - callback.eval_time
    row = {
        "config": config,
        "seed": seed,
        "steps_to_threshold": callback.first_success if callback.first_success is not None else "",
        "last_eval": round(float(callback.last_mean), 1),
        "timesteps_run": model.num_timesteps,
        "fps": round(model.num_timesteps / train_time, 1),
    }
    if args.no_early_stop:
        final_mean, final_std = evaluate_policy(
            model, eval_env, n_eval_episodes=args.final_eval_episodes, deterministic=True
        )
        row.update(
            final_eval=round(float(final_mean), 1),
            final_eval_std=round(float(final_std), 1),
            ess_replay_mean=staleness.mean("train/ess_replay_mean"),
            ess_new_mean=staleness.mean("trust_region/ess"),
            rho_truncated_fraction=staleness.mean("train/rho_truncated_fraction"),
            approx_kl_mean=staleness.mean("trust_region/approx_kl"),
        )
    return row


def _steps(row: dict, args: argparse.Namespace) -> int:
    """Steps to the threshold; an unsolved run counts as the whole budget."""
    return row["steps_to_threshold"] if row["steps_to_threshold"] != "" else args.timesteps


def summarise(rows: list[dict], args: argparse.Namespace) -> str:
    configs = list(dict.fromkeys(row["config"] for row in rows))
    a2c = [row for row in rows if row["config"] == "a2c"]
    fps_a2c = statistics.median(row["fps"] for row in a2c) if a2c else None
    steps_a2c = statistics.median(_steps(row, args) for row in a2c) if a2c else None
    lines = [
        f"{args.env}, n_envs={args.n_envs}, n_steps={args.n_steps}, learning_rate={args.learning_rate}, "
        f"ent_coef={args.ent_coef}, seeds {args.seeds}, budget {args.timesteps} steps, deterministic evaluation "
        f"({args.eval_episodes} episodes) every {args.eval_freq} steps, threshold {args.threshold}. "
        "Unsolved runs count as the budget in the median.",
        "",
    ]
    if args.no_early_stop:
        return "\n".join(lines) + _stale_table(rows, configs, args)
    lines += [
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


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} +- {std:.1f}"


def _fmean(values: list) -> str:
    values = [v for v in values if v != ""]
    return f"{statistics.fmean(values):.3f}" if values else "-"


def _stale_table(rows: list[dict], configs: list[str], args: argparse.Namespace) -> str:
    """Training for the whole budget: threshold, final evaluation and how stale the data was."""
    lines = [
        f"Training ran the whole budget; final evaluation: {args.final_eval_episodes} deterministic episodes, "
        "mean +- std over seeds of the per-seed mean. ESS/N: normalised effective sample size of the importance "
        "weights pi_current/mu after each update, averaged over updates (replayed rollouts; new rollout). "
        "rho trunc.: share of weights > rho_bar=1 seen by the gradient steps.",
        "",
        "| config | solved | median steps to threshold | steps per seed | final eval (mean +- std) | final eval per seed "
        "| ESS/N replayed | ESS/N new | rho trunc. | approx KL | median FPS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        mine = [row for row in rows if row["config"] == config]
        median_steps = statistics.median(_steps(row, args) for row in mine)
        per_seed = ", ".join(str(row["steps_to_threshold"]) if row["steps_to_threshold"] != "" else "-" for row in mine)
        solved = sum(row["steps_to_threshold"] != "" for row in mine)
        finals = [row["final_eval"] for row in mine if not math.isnan(row["final_eval"])]
        lines.append(
            f"| {config} | {solved}/{len(mine)} | {median_steps:.0f} | {per_seed} | {_mean_std(finals)} "
            f"| {', '.join(f'{v:.0f}' for v in finals)} | {_fmean([r['ess_replay_mean'] for r in mine])} "
            f"| {_fmean([r['ess_new_mean'] for r in mine])} | {_fmean([r['rho_truncated_fraction'] for r in mine])} "
            f"| {_fmean([r['approx_kl_mean'] for r in mine])} | {statistics.median(r['fps'] for r in mine):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=200_000)
    default_configs = ["a2c", "vtrace_e1", "vtrace_e1_nostats", "vtrace_e4", "none_e4", "vtrace_r4", "none_r4"]
    parser.add_argument(
        "--configs", nargs="+", default=default_configs, type=config_name, help=f"{list(CONFIGS)} or (vtrace|none)_e<E>[_r<R>]"
    )
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=7e-4)
    parser.add_argument("--ent-coef", type=float, default=0.0)
    parser.add_argument("--eval-freq", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=None, help=f"default: {THRESHOLDS}")
    parser.add_argument("--no-early-stop", action="store_true", help="train for the whole budget (stale-data regime)")
    parser.add_argument("--final-eval-episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair FPS on a shared machine)")
    parser.add_argument("--output", default="vtrace_sample_efficiency")
    args = parser.parse_args()
    if args.threshold is None:
        args.threshold = THRESHOLDS[args.env]
    th.set_num_threads(args.threads)

    rows = []
    # Seeds outermost and configurations interleaved, so that machine-load drifts hit all alike.
    for seed in args.seeds:
        for config in args.configs:
            row = run(config, seed, args)
            print(row, flush=True)
            rows.append(row)
            table = write_results(rows, args)  # after every run: an interrupted sweep keeps what it measured
    print(table)


def write_results(rows: list[dict], args: argparse.Namespace) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{args.output}.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = summarise(sorted(rows, key=lambda row: args.configs.index(row["config"])), args)
    title = "VTraceA2C on stale data" if args.no_early_stop else "VTraceA2C sample efficiency"
    (RESULTS / f"{args.output}.md").write_text(f"# {title}\n\n" + table)
    return table


if __name__ == "__main__":
    main()
