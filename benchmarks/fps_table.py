"""Training speed of every sb3_pgx algorithm against its SB3 counterpart, side by side.

    OMP_NUM_THREADS=1 python -m benchmarks.fps_table --repeats 5

Six pairs on CartPole-v1, one torch thread, ``device="cpu"``, each pair with the same settings
(same ``n_envs``, ``n_steps``, minibatches, epochs, critic passes, and the counterpart's default
``log_interval`` for both) so that both do the same work:

- VTraceA2C vs A2C: A2C's rl-zoo3 shape, 8 envs x ``n_steps=5``, one epoch, one minibatch; once
  with VTraceA2C's defaults and once without its post-update trust-region figures
  (``log_update_stats=False``: an evaluation pass A2C does not make, so the same work as A2C's)
- MDPO, AdaptiveKLPPO, ImportanceSampledPG vs PPO: PPO's defaults (``n_steps=2048``, minibatches
  of 64, 10 epochs); ImportanceSampledPG without its ESS early stop (``min_ess=None``), MDPO with
  ``n_epochs=10``
- NaturalPG vs sb3-contrib TRPO: TRPO's defaults (``n_steps=2048``, critic minibatches of 128,
  10 critic passes, 15 CG steps, damping 0.1, ``target_kl=0.01``, ``gae_lambda=0.95``); NaturalPG has no
  line search, TRPO's is part of its work
- VanillaPG vs A2C: VanillaPG's shape (1 env, ``n_steps=256``), one critic pass on the whole rollout
  (``n_critic_updates=1``, ``batch_size=None``)

The machine is shared and its load changes within seconds, so the two algorithms of a pair train
side by side in one process: each repeat builds both with the same seed and alternates chunks of
``learn`` between them (a few thousand steps each, the first chunk's order alternating between
repeats), so that a change of load hits both alike. A repeat's ratio (ours / theirs) is that of
the total training times, wall-clock (FPS) and CPU (process time, less sensitive to other load);
the table reports the median over repeats. Writes ``benchmarks/results/fps_table.csv`` (one row per
repeat) and ``.md`` (``--out`` names another stem).

To measure another checkout (e.g. the code before a change), copy this file into it and run it from
there, so that its ``sb3_pgx`` is the one imported::

    git worktree add /tmp/before <commit> && cp benchmarks/fps_table.py /tmp/before/benchmarks/
    cd /tmp/before && OMP_NUM_THREADS=1 /work/main/.venv/bin/python -m benchmarks.fps_table --out fps_table_before
"""

import argparse
import csv
import inspect
import platform
import statistics
import time
from pathlib import Path

import stable_baselines3
import torch as th
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

import sb3_pgx
from sb3_pgx import MDPO, AdaptiveKLPPO, ImportanceSampledPG, NaturalPG, VanillaPG, VTraceA2C

RESULTS = Path(__file__).parent / "results"
ENV_ID = "CartPole-v1"

#: Settings both algorithms of a pair share.
A2C_ZOO = dict(n_steps=5)
PPO_DEFAULTS = dict(n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4, gae_lambda=0.95)
TRPO_DEFAULTS = dict(
    n_steps=2048, batch_size=128, n_critic_updates=10, cg_max_steps=15, cg_damping=0.1, target_kl=0.01, gae_lambda=0.95
)
VPG_SHAPE = dict(n_steps=256)

#: key -> (ours, theirs, n_envs, ours' kwargs, theirs' kwargs, steps per chunk, chunks per repeat)
PAIRS: dict[str, tuple[type[BaseAlgorithm], type[BaseAlgorithm], int, dict, dict, int, int]] = {
    "a2c_vtrace": (VTraceA2C, A2C, 8, dict(A2C_ZOO, n_epochs=1), A2C_ZOO, 2000, 8),
    "a2c_vtrace_nostats": (VTraceA2C, A2C, 8, dict(A2C_ZOO, n_epochs=1, log_update_stats=False), A2C_ZOO, 2000, 8),
    "mdpo": (MDPO, PPO, 1, PPO_DEFAULTS, PPO_DEFAULTS, 2048, 3),
    "ppo_kl": (AdaptiveKLPPO, PPO, 1, PPO_DEFAULTS, PPO_DEFAULTS, 2048, 3),
    "ispg": (ImportanceSampledPG, PPO, 1, dict(PPO_DEFAULTS, min_ess=None), PPO_DEFAULTS, 2048, 3),
    "npg": (NaturalPG, TRPO, 1, TRPO_DEFAULTS, TRPO_DEFAULTS, 2048, 4),
    "vpg": (VanillaPG, A2C, 1, dict(VPG_SHAPE, n_critic_updates=1, batch_size=None), VPG_SHAPE, 2048, 8),
}  # fmt: skip


def label(key: str) -> str:
    """``"VTraceA2C vs A2C"`` for ``"a2c_vtrace"``."""
    ours, theirs, _, ours_kwargs, *_ = PAIRS[key]
    extra = "" if ours_kwargs.get("log_update_stats", True) else " (log_update_stats=False)"
    return f"{ours.__name__}{extra} vs {theirs.__name__}"


def make_model(key: str, side: str, seed: int, device: str = "cpu") -> BaseAlgorithm:
    """Our algorithm (``side="ours"``) or its counterpart (``"theirs"``) of pair ``key``, on ``device``."""
    ours, theirs, n_envs, ours_kwargs, theirs_kwargs, *_ = PAIRS[key]
    cls, kwargs = (ours, ours_kwargs) if side == "ours" else (theirs, theirs_kwargs)
    return cls("MlpPolicy", make_vec_env(ENV_ID, n_envs=n_envs, seed=seed), seed=seed, device=device, **kwargs)


def run_pair(key: str, repeat: int, seed: int, device: str = "cpu") -> dict[str, float | str]:
    """Both algorithms of pair ``key``, same seed, trained in alternating chunks; the first chunk is
    ours on even repeats, theirs on odd ones, and the order alternates from chunk to chunk."""
    _, theirs, *_, chunk, n_chunks = PAIRS[key]
    models = {side: make_model(key, side, seed, device) for side in ("ours", "theirs")}
    # The same logging for both: the counterpart's default (A2C dumps every 100 iterations, PPO and
    # TRPO every one; ours, as SB3's base class, every one), so that neither pays more dumps.
    log_interval = inspect.signature(theirs.learn).parameters["log_interval"].default
    wall, cpu = dict.fromkeys(models, 0.0), dict.fromkeys(models, 0.0)
    for index in range(n_chunks):
        order = ("ours", "theirs") if (repeat + index) % 2 == 0 else ("theirs", "ours")
        for side in order:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            models[side].learn(chunk, reset_num_timesteps=index == 0, log_interval=log_interval)
            wall[side] += time.perf_counter() - start_wall
            cpu[side] += time.process_time() - start_cpu
    timesteps = chunk * n_chunks
    return {
        "pair": label(key),
        "repeat": repeat,
        "seed": seed,
        "first": "ours" if repeat % 2 == 0 else "theirs",
        "timesteps": timesteps,
        "ours_fps": timesteps / wall["ours"],
        "theirs_fps": timesteps / wall["theirs"],
        "fps_ratio": wall["theirs"] / wall["ours"],
        "ours_cpu_s": cpu["ours"],
        "theirs_cpu_s": cpu["theirs"],
        "cpu_ratio": cpu["theirs"] / cpu["ours"],
    }


def write_csv(rows: list[dict], stem: Path) -> None:
    """``stem.csv``: one line per row, the first row's keys as the header."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".csv"), "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_results(rows: list[dict], stem: Path, command: str) -> list[str]:
    """Write ``stem.csv`` (one row per repeat) and ``stem.md`` (medians per pair); return the markdown lines."""
    write_csv(rows, stem)

    lines = [
        "# FPS of each sb3_pgx algorithm against its SB3 counterpart",
        "",
        f"`{command}`",
        "",
        f"{ENV_ID}, torch threads: 1, device cpu; Python {platform.python_version()}, torch {th.__version__}, "
        f"stable-baselines3 {stable_baselines3.__version__}. Ratios are ours / theirs (> 1: ours is faster), "
        "medians over repeats; in each repeat both train side by side with the same seed, in alternating chunks.",
        "",
        "| pair | timesteps per repeat | repeats | ours FPS (median) | theirs FPS (median) | FPS ratio (median) "
        "| FPS ratio (min-max) | CPU-time ratio (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["pair"] for row in rows):
        mine = [row for row in rows if row["pair"] == name]
        ratios = [row["fps_ratio"] for row in mine]
        lines.append(
            f"| {name} | {mine[0]['timesteps']} | {len(mine)} | {statistics.median(r['ours_fps'] for r in mine):.0f} "
            f"| {statistics.median(r['theirs_fps'] for r in mine):.0f} | {statistics.median(ratios):.2f} "
            f"| {min(ratios):.2f}-{max(ratios):.2f} | {statistics.median(r['cpu_ratio'] for r in mine):.2f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="back-to-back runs of each pair (order alternates)")
    parser.add_argument("--pairs", nargs="+", choices=list(PAIRS), default=list(PAIRS), help="pairs to run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first repeat (repeat i uses seed + i)")
    parser.add_argument("--out", default="fps_table", help="stem of the result files under benchmarks/results/")
    args = parser.parse_args()
    th.set_num_threads(1)
    print(f"sb3_pgx from {Path(sb3_pgx.__file__).parent}", flush=True)

    rows = []
    for repeat in range(args.repeats):
        for key in args.pairs:
            row = run_pair(key, repeat, args.seed + repeat)
            rows.append(row)
            print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    command = "OMP_NUM_THREADS=1 python -m benchmarks.fps_table" + (f" --repeats {args.repeats}" if args.repeats != 5 else "")
    print("\n".join(write_results(rows, RESULTS / args.out, command)))


if __name__ == "__main__":
    main()
