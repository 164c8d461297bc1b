"""Benchmark campaign on the rl-zoo3 path: ``python -m benchmarks.run --algos ... --envs ... --seeds 3``.

Every run is ``python -m sb3_pgx.zoo train ...`` in a subprocess (through :mod:`benchmarks._zoo_timed`,
which adds a stopwatch) with ``hyperparams/<algo>.yml`` for ours and rl-zoo3's tuned files for a2c, ppo
and trpo. Budget: ``--n-timesteps``, else the yml's ``n_timesteps`` for the env, capped by
``--max-timesteps``. Each run leaves ``n<budget>_s<seed>_curve.csv`` and ``_summary.csv`` under
``benchmarks/results/campaign/<env>/<algo>/`` (logs and models stay in ``--log-dir``); a run whose
summary exists is skipped, so an interrupted campaign resumes. Then (or alone with ``--aggregate``)
:func:`benchmarks.report.aggregate` writes the tables and plots. Commands per budget group:
``docs/benchmarks.md``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.harness import ALL_ALGOS, BASELINES, OURS, REPO, RESULTS, write_csv
from sb3_pgx.zoo import hyperparams_file

RESULTS_DIR = RESULTS / "campaign"
DOCS_DIR = REPO / "docs"
ENVS = [
    "CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0", "LunarLander-v3", "LunarLanderContinuous-v3",
    "HalfCheetah-v5", "Hopper-v5",
]  # fmt: skip


def yml_path(algo: str) -> Path:
    """Ours: ``hyperparams/<algo>.yml``; a2c/ppo/trpo: the file rl-zoo3 ships."""
    if algo in OURS:
        return hyperparams_file(algo)
    import rl_zoo3

    return Path(rl_zoo3.__file__).resolve().parent / "hyperparams" / f"{algo}.yml"


def zoo_entry(algo: str, env: str) -> tuple[dict, str] | None:
    """The yml entry used for ``env`` and the id it is stored under (None: no entry).

    rl-zoo3 2.9.2 ships MuJoCo settings under the ``-v4`` ids only: for ``HalfCheetah-v5`` the
    ``HalfCheetah-v4`` entry (same task, newer gymnasium version) stands in, through a one-entry
    ``--conf-file``.
    """
    with open(yml_path(algo)) as f:
        table = yaml.safe_load(f)  # safe_load resolves the files' anchors and ``<<`` merge keys
    name, _, version = env.rpartition("-v")
    older = [f"{name}-v{v}" for v in range(int(version) - 1, -1, -1)] if name and version.isdigit() else []
    for key in [env, *older]:
        if key in table:
            return table[key], key
    return None


def zoo_budget(algo: str, env: str) -> int | None:
    """``n_timesteps`` of ``env`` in the algorithm's yml (None when the yml has no entry for it)."""
    found = zoo_entry(algo, env)
    return None if found is None else int(float(found[0]["n_timesteps"]))


def run_budget(algo: str, env: str, n_timesteps: int | None, max_timesteps: int | None) -> int | None:
    if zoo_budget(algo, env) is None:
        return None
    budget = n_timesteps or zoo_budget(algo, env)
    return min(budget, max_timesteps) if max_timesteps else budget


def run_stem(results_dir: Path, env: str, algo: str, budget: int, seed: int) -> Path:
    return Path(results_dir) / env / algo / f"n{budget}_s{seed}"


def zoo_command(algo, env, seed, budget, eval_freq, eval_episodes, folder, conf=None) -> list[str]:
    """The rl-zoo3 train command of one run (what a user types to reproduce a cell)."""
    return [
        "python", "-m", "sb3_pgx.zoo", "train", "--algo", algo, "--env", env, "--seed", str(seed),
        "-f", folder, "--eval-freq", str(eval_freq), "--eval-episodes", str(eval_episodes),
        "-n", str(budget), "--num-threads", "1", *(["--conf-file", conf] if conf else []),
    ]  # fmt: skip


def run_one(algo, env, seed, budget, args) -> dict:
    """Train one (algo, env, seed) through rl-zoo3 and write its curve and summary CSVs."""
    stem = run_stem(args.results_dir, env, algo, budget, seed)
    log_root = Path(args.log_dir) / env / algo / f"n{budget}_s{seed}"
    shutil.rmtree(log_root, ignore_errors=True)  # a half-finished earlier attempt
    log_root.mkdir(parents=True)
    entry, key = zoo_entry(algo, env)
    conf = None
    if key != env:  # stand-in entry of an older env version (rl-zoo3's MuJoCo -v4 settings for -v5)
        conf = str(log_root / "conf.yml")
        with open(conf, "w") as f:
            yaml.safe_dump({env: entry}, f)
    command = zoo_command(algo, env, seed, budget, args.eval_freq, args.eval_episodes, str(log_root), conf)
    timing = log_root / "timing.json"
    argv = [sys.executable, "-m", "benchmarks._zoo_timed", str(timing), *command[3:]]
    env_vars = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    load_start = os.getloadavg()[0]  # the machine is shared: FPS depends on what else runs
    start = time.perf_counter()
    with open(log_root / "stdout.txt", "w") as out:
        proc = subprocess.run(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env_vars)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (log_root / "stdout.txt").read_text().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(command)} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    npz = sorted(log_root.glob(f"{algo}/{env}_*/evaluations.npz"))
    if not npz:
        raise RuntimeError(f"no evaluations.npz under {log_root} (is --eval-freq below the budget?)")
    data = np.load(npz[-1])
    timesteps, results = data["timesteps"], data["results"]  # [n_evals], [n_evals, n_episodes]
    times = json.loads(timing.read_text())
    train_s = max(times["learn_s"] - times["eval_s"], 1e-9)
    curve = [
        {"timesteps": int(t), "mean_return": f"{np.mean(r):.4f}", "std_return": f"{np.std(r):.4f}"}
        for t, r in zip(timesteps, results, strict=True)
    ]
    write_csv(curve, Path(f"{stem}_curve.csv"))
    summary = {
        "env": env, "algo": algo, "seed": seed, "budget": budget, "final_timestep": int(timesteps[-1]),
        "final_mean": f"{np.mean(results[-1]):.4f}", "final_std": f"{np.std(results[-1]):.4f}",
        "eval_episodes": results.shape[1], "n_evals": len(timesteps), "train_fps": f"{times['num_timesteps'] / train_s:.1f}",
        "learn_wall_s": f"{times['learn_s']:.2f}", "eval_wall_s": f"{times['eval_s']:.2f}", "total_wall_s": f"{total:.2f}",
        "hyperparams": ("rl-zoo3" if algo in BASELINES else f"hyperparams/{algo}.yml") + (f" ({key} entry)" if conf else ""),
        "command": " ".join(zoo_command(algo, env, seed, budget, args.eval_freq, args.eval_episodes, "logs",
                                        "conf.yml" if conf else None)),
        "loadavg_start": f"{load_start:.2f}",
    }  # fmt: skip
    write_csv([summary], Path(f"{stem}_summary.csv"))  # written last: its presence marks the run as done
    if not args.keep_logs:
        shutil.rmtree(log_root, ignore_errors=True)
    return summary


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def campaign(args) -> list[str]:
    """Run every (env, algo, seed) not done yet, one after the other (or ``--jobs`` at a time)."""
    plan = []
    for env in args.envs:
        for algo in args.algos:
            budget = run_budget(algo, env, args.n_timesteps, args.max_timesteps)
            if budget is None:
                print(f"skip (no hyperparameters) {algo} on {env}: no entry in {yml_path(algo)}", flush=True)
                continue
            plan += [(algo, env, seed, budget) for seed in range(args.seed_offset, args.seed_offset + args.seeds)]
    todo = [p for p in plan if not Path(f"{run_stem(args.results_dir, p[1], p[0], p[3], p[2])}_summary.csv").exists()]
    print(f"{len(plan)} runs planned, {len(plan) - len(todo)} already done, {len(todo)} to run", flush=True)
    failures = []
    start = time.perf_counter()

    def attempt(item):
        try:
            result = run_one(*item, args)
            what = f"final {float(result['final_mean']):.1f}, {float(result['train_fps']):.0f} FPS"
        except Exception as exc:  # one failed run must not stop the campaign
            failures.append(f"{item[1]} {item[0]} seed {item[2]}: {exc}")
            what = f"FAILED: {str(exc).splitlines()[0]}"
        return item, what

    if args.jobs <= 1:  # in this thread, so that Ctrl-C stops the campaign
        done = (attempt(item) for item in todo)
    else:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        pool = ThreadPoolExecutor(args.jobs)
        done = (future.result() for future in as_completed([pool.submit(attempt, item) for item in todo]))
    for i, ((algo, env, seed, budget), what) in enumerate(done, 1):
        elapsed = time.perf_counter() - start
        eta = elapsed / i * (len(todo) - i)
        print(f"[{i}/{len(todo)}] {env} {algo} seed {seed} ({budget} steps): {what} | elapsed {_fmt_time(elapsed)}, "
              f"ETA {_fmt_time(eta)}", flush=True)  # fmt: skip
    for line in failures:
        print(f"FAILED {line}", file=sys.stderr, flush=True)
    return failures


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", default=ALL_ALGOS, choices=ALL_ALGOS)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1"])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (seed-offset, seed-offset+1, ...)")
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--n-timesteps", type=int, default=None, help="budget of every run (default: the yml's)")
    parser.add_argument("--max-timesteps", type=int, default=None, help="cap on the yml's budget")
    parser.add_argument("--eval-freq", type=int, default=10_000, help="evaluate every F environment steps")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (keep 1 on a small machine)")
    parser.add_argument("--log-dir", default="/tmp/sb3_pgx_campaign", help="scratch folder for zoo logs and models")
    parser.add_argument("--keep-logs", action="store_true", help="keep the scratch logs of finished runs")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--docs-dir", type=Path, default=DOCS_DIR)
    parser.add_argument("--aggregate", action="store_true", help="only rebuild docs/results.md and the plots")
    parser.add_argument("--no-aggregate", action="store_true", help="do not aggregate after the runs")
    parser.add_argument("--random-scores", type=int, metavar="EPISODES", help="measure the random policy's return first")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.random_scores:
        from benchmarks.intervals import measure_random_scores

        measure_random_scores(ENVS, args.random_scores)
        return 0
    failures = [] if args.aggregate else campaign(args)
    if args.aggregate or not args.no_aggregate:
        from benchmarks.report import aggregate

        aggregate(args.results_dir, args.docs_dir)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
