"""NaturalPG against sb3-contrib's TRPO, side by side, with identical settings.

Both algorithms get the same n_steps, n_envs, batch_size, gamma, gae_lambda, critic learning
rate, n_critic_updates, cg_max_steps, cg_damping and target_kl (TRPO adds its backtracking line
search; NaturalPG takes the KL-radius step directly). For each env and seed it records:

- final return: mean of the last 20 training episodes (stochastic policy, raw rewards) and a
  deterministic evaluation over 10 episodes at the end;
- FPS: timesteps / wall time of ``learn``;
- mean wall time per ``train()`` call (policy update + critic), and of its actor part alone
  (from the start of ``train()`` to the first critic minibatch; for NaturalPG this includes
  measuring the exact KL after the step, for TRPO its line search).

    nice -n 10 python benchmarks/npg_vs_trpo.py --envs CartPole-v1 --seeds 0 1 2 --timesteps 100000

Writes ``benchmarks/results/npg_vs_trpo.csv`` (one row per run) and ``.md`` (mean +/- std per
env and algorithm, and the NaturalPG / TRPO ratios of the update times).
"""

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch as th
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from sb3_pgx import NaturalPG

RESULTS = Path(__file__).parent / "results"

# Shared settings per env (rl-zoo3's TRPO settings, and the NaturalPG defaults on CartPole).
SETTINGS = {
    "CartPole-v1": dict(
        n_envs=1, normalize=False,
        kwargs=dict(n_steps=1024, batch_size=256, gae_lambda=0.98, learning_rate=1e-3, n_critic_updates=20,
                    cg_max_steps=15, cg_damping=0.01, target_kl=0.02),
    ),
    "Acrobot-v1": dict(
        n_envs=2, normalize=True,
        kwargs=dict(n_steps=1024, batch_size=128, gae_lambda=0.98, learning_rate=1e-3, n_critic_updates=10,
                    cg_max_steps=15, cg_damping=0.01, target_kl=0.01),
    ),
    "Pendulum-v1": dict(
        n_envs=2, normalize=False,
        kwargs=dict(n_steps=1024, batch_size=128, gamma=0.9, gae_lambda=0.95, learning_rate=1e-3, n_critic_updates=15,
                    cg_max_steps=15, cg_damping=0.1, target_kl=0.01, use_sde=True, sde_sample_freq=4),
    ),
}
ALGOS = {"NaturalPG": NaturalPG, "TRPO": TRPO}


def instrument(model) -> dict[str, list[float]]:
    """Time every ``train()`` call and its actor part (until the critic's first minibatch)."""
    timings: dict[str, list[float]] = {"train": [], "actor": []}
    train, buffer_get = model.train, model.rollout_buffer.get
    state = {"start": 0.0, "critic_started": None}

    def get(batch_size=None):
        # Both algorithms read the whole batch with get(None) for the policy step and minibatches
        # of batch_size for the critic.
        if batch_size is not None and state["critic_started"] is None:
            state["critic_started"] = time.perf_counter()
        return buffer_get(batch_size)

    def timed_train():
        state["start"], state["critic_started"] = time.perf_counter(), None
        train()
        end = time.perf_counter()
        timings["train"].append(end - state["start"])
        timings["actor"].append((state["critic_started"] or end) - state["start"])

    model.train = timed_train
    model.rollout_buffer.get = get
    return timings


def make_env(env_id: str, n_envs: int, normalize: bool, seed: int):
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    return VecNormalize(env, gamma=SETTINGS[env_id]["kwargs"].get("gamma", 0.99)) if normalize else env


def run(algo: str, env_id: str, seed: int, timesteps: int) -> dict:
    setting = SETTINGS[env_id]
    env = make_env(env_id, setting["n_envs"], setting["normalize"], seed)
    model = ALGOS[algo]("MlpPolicy", env, seed=seed, device="cpu", **setting["kwargs"])
    timings = instrument(model)
    start = time.perf_counter()
    model.learn(timesteps)
    wall = time.perf_counter() - start

    eval_env = make_env(env_id, 1, setting["normalize"], seed + 1000)
    if setting["normalize"]:
        eval_env.obs_rms, eval_env.training, eval_env.norm_reward = env.obs_rms, False, False
    eval_mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True, warn=False)
    episodes = [info["r"] for info in list(model.ep_info_buffer)[-20:]]
    return {
        "env": env_id,
        "algo": algo,
        "seed": seed,
        "timesteps": model.num_timesteps,
        "final_train_return": float(np.mean(episodes)) if episodes else float("nan"),
        "deterministic_eval_return": float(eval_mean),
        "fps": model.num_timesteps / wall,
        "mean_train_time_s": float(np.mean(timings["train"])),
        "mean_actor_update_time_s": float(np.mean(timings["actor"])),
        "n_updates": len(timings["train"]),
    }


def _parse(key: str, value: str) -> str | int | float:
    """A CSV cell back to the type :func:`run` wrote."""
    if key in ("env", "algo"):
        return value
    return int(float(value)) if key in ("seed", "timesteps", "n_updates") else float(value)


def mean_std(values) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def write_markdown(rows: list[dict], path: Path, command: str) -> None:
    lines = [
        "# NaturalPG vs sb3-contrib TRPO",
        "",
        f"Command: `{command}`",
        "",
        "Same n_steps, n_envs, batch_size, critic lr and updates, cg_max_steps, cg_damping and target_kl. "
        "Return: mean of the last 20 training episodes / deterministic eval (10 episodes), mean ± std over seeds. "
        "Times: mean wall time per `train()` call (whole) and its policy-update part (actor), in ms.",
        "",
        "| env | algo | seeds | timesteps | train return | det. eval return | FPS | train() ms | actor update ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    envs = list(dict.fromkeys(row["env"] for row in rows))
    for env_id in envs:
        for algo in ALGOS:
            runs = [row for row in rows if row["env"] == env_id and row["algo"] == algo]
            if not runs:
                continue
            lines.append(
                f"| {env_id} | {algo} | {len(runs)} | {runs[0]['timesteps']} "
                f"| {mean_std([r['final_train_return'] for r in runs])} "
                f"| {mean_std([r['deterministic_eval_return'] for r in runs])} "
                f"| {np.mean([r['fps'] for r in runs]):.0f} "
                f"| {1000 * np.mean([r['mean_train_time_s'] for r in runs]):.1f} "
                f"| {1000 * np.mean([r['mean_actor_update_time_s'] for r in runs]):.1f} |"
            )
    lines += ["", "Ratios NaturalPG / TRPO (mean over seeds; < 1 means NaturalPG is cheaper / faster):", ""]
    lines += ["| env | train() time | actor update time | FPS |", "|---|---|---|---|"]
    for env_id in envs:
        by_algo = {
            algo: [row for row in rows if row["env"] == env_id and row["algo"] == algo] for algo in ALGOS
        }
        if not all(by_algo.values()):
            continue

        def ratio(key: str, by_algo=by_algo) -> float:
            return np.mean([r[key] for r in by_algo["NaturalPG"]]) / np.mean([r[key] for r in by_algo["TRPO"]])

        lines.append(
            f"| {env_id} | {ratio('mean_train_time_s'):.2f} | {ratio('mean_actor_update_time_s'):.2f} | {ratio('fps'):.2f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[100_000],
                        help="one budget for all envs, or one per env (in --envs order)")
    parser.add_argument("--append", action="store_true", help="add to the existing CSV instead of replacing it")
    args = parser.parse_args()
    budgets = args.timesteps * len(args.envs) if len(args.timesteps) == 1 else args.timesteps
    if len(budgets) != len(args.envs):
        parser.error("--timesteps takes one value or one per env")
    th.set_num_threads(1)  # the machine is shared; also makes the timings comparable

    RESULTS.mkdir(parents=True, exist_ok=True)
    csv_path = RESULTS / "npg_vs_trpo.csv"
    rows: list[dict] = []
    if args.append and csv_path.exists():
        with csv_path.open() as file:
            rows = [{key: _parse(key, value) for key, value in row.items()} for row in csv.DictReader(file)]
    for env_id, budget in zip(args.envs, budgets, strict=True):
        for seed in args.seeds:
            for algo in ALGOS:  # one run at a time
                row = run(algo, env_id, seed, budget)
                rows.append(row)
                print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
                with csv_path.open("w", newline="") as file:
                    writer = csv.DictWriter(file, fieldnames=list(row))
                    writer.writeheader()
                    writer.writerows(rows)
    command = "python benchmarks/npg_vs_trpo.py " + " ".join(
        ["--envs", *args.envs, "--seeds", *map(str, args.seeds), "--timesteps", *map(str, args.timesteps)]
    )
    write_markdown(rows, RESULTS / "npg_vs_trpo.md", command + (" --append (runs merged)" if args.append else ""))


if __name__ == "__main__":
    main()
