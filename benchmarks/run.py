"""Benchmark campaign on the rl-zoo3 path: ``python -m benchmarks.run --algos ... --envs ... --seeds 3``.

Every run is ``python -m sb3_pgx.zoo train --algo A --env E --seed S -f <scratch> --eval-freq F
--eval-episodes K -n N`` in a subprocess (through :mod:`benchmarks._zoo_timed`, which only adds a
stopwatch): our ``hyperparams/<algo>.yml`` for our six algorithms, rl-zoo3's own tuned files for
``a2c``, ``ppo`` and ``trpo``. Budget per run: ``--n-timesteps`` if given, else the yml's
``n_timesteps`` for that env, capped by ``--max-timesteps``.

Only small summaries are kept in the repository, under ``benchmarks/results/campaign/<env>/<algo>/``:
``n<budget>_s<seed>_curve.csv`` (the evaluation curve from ``evaluations.npz``) and
``n<budget>_s<seed>_summary.csv`` (final evaluation, training FPS, wall times, the command). Logs
and model zips stay in the scratch folder (``--log-dir``, default ``/tmp/sb3_pgx_campaign``). A run
whose summary exists is skipped, so an interrupted campaign resumes where it stopped.

At the end (or alone with ``--aggregate``) ``docs/results.md`` gets the table (mean +- std over
seeds of the final evaluation, training FPS, budget, one command per cell) and ``docs/plots/<env>.png``
the learning curves of every algorithm on that env.

Examples::

    python -m benchmarks.run --algos vpg ispg npg ppo_kl mdpo a2c_vtrace a2c ppo trpo \
        --envs CartPole-v1 --seeds 3 --max-timesteps 100000
    python -m benchmarks.run --aggregate
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from sb3_pgx.zoo import ZOO_ALGOS, hyperparams_file

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results" / "campaign"
DOCS_DIR = REPO / "docs"
OURS = list(ZOO_ALGOS)
BASELINES = ["a2c", "ppo", "trpo"]
ALL_ALGOS = ["vpg", "ispg", "npg", "ppo_kl", "mdpo", "a2c_vtrace", "a2c", "ppo", "trpo"]
# The baseline each of ours is judged against (benchmarks/intervals.py).
BASELINE_OF = {"vpg": "a2c", "ispg": "ppo", "npg": "trpo", "ppo_kl": "ppo", "mdpo": "ppo", "a2c_vtrace": "a2c"}
# VanillaPG must solve these envs (gymnasium's reward_threshold of each).
VPG_MUST_SOLVE = ["CartPole-v1", "Acrobot-v1", "LunarLander-v3"]
ENVS = [
    "CartPole-v1",
    "Acrobot-v1",
    "Pendulum-v1",
    "MountainCarContinuous-v0",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
    "HalfCheetah-v5",
    "Hopper-v5",
]
SUMMARY_FIELDS = [
    "env",
    "algo",
    "seed",
    "budget",
    "final_timestep",
    "final_mean",
    "final_std",
    "eval_episodes",
    "n_evals",
    "train_fps",
    "learn_wall_s",
    "eval_wall_s",
    "total_wall_s",
    "hyperparams",
    "command",
    "loadavg_start",
]


def yml_path(algo: str) -> Path:
    """Ours: ``hyperparams/<algo>.yml``; a2c/ppo/trpo: the file rl-zoo3 ships."""
    if algo in ZOO_ALGOS:
        return hyperparams_file(algo)
    import rl_zoo3

    return Path(rl_zoo3.__file__).resolve().parent / "hyperparams" / f"{algo}.yml"


def _older_versions(env: str) -> list[str]:
    """``Hopper-v5`` -> ``["Hopper-v4", "Hopper-v3", ...]``: ids whose yml entry may stand in for ``env``."""
    name, _, version = env.rpartition("-v")
    if not name or not version.isdigit():
        return []
    return [f"{name}-v{v}" for v in range(int(version) - 1, -1, -1)]


def zoo_entry(algo: str, env: str) -> tuple[dict, str] | None:
    """The yml entry used for ``env`` and the id it is stored under.

    rl-zoo3 2.9.2 ships MuJoCo settings under the ``-v4`` ids only; for ``HalfCheetah-v5`` the harness
    uses the ``HalfCheetah-v4`` entry (same task, newer gymnasium version) through a one-entry
    ``--conf-file``. None when neither ``env`` nor an older version of it has an entry.
    """
    with open(yml_path(algo)) as f:
        table = yaml.safe_load(f)  # safe_load resolves the files' anchors and ``<<`` merge keys
    for key in [env, *_older_versions(env)]:
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
    budget = n_timesteps if n_timesteps else zoo_budget(algo, env)
    if max_timesteps:
        budget = min(budget, max_timesteps)
    return budget


def run_stem(results_dir: Path, env: str, algo: str, budget: int, seed: int) -> Path:
    return results_dir / env / algo / f"n{budget}_s{seed}"


def zoo_command(
    algo: str, env: str, seed: int, budget: int, eval_freq: int, eval_episodes: int, folder: str, conf: str | None = None
) -> list[str]:
    """The rl-zoo3 train command of one run (what a user types to reproduce a cell)."""
    return [
        "python", "-m", "sb3_pgx.zoo", "train", "--algo", algo, "--env", env, "--seed", str(seed),
        "-f", folder, "--eval-freq", str(eval_freq), "--eval-episodes", str(eval_episodes),
        "-n", str(budget), "--num-threads", "1", *(["--conf-file", conf] if conf else []),
    ]  # fmt: skip


def run_one(algo, env, seed, budget, args) -> dict:
    """Train one (algo, env, seed) through rl-zoo3 and write its curve and summary CSVs."""
    stem = run_stem(Path(args.results_dir), env, algo, budget, seed)
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
    import json

    times = json.loads(timing.read_text())
    train_s = max(times["learn_s"] - times["eval_s"], 1e-9)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{stem}_curve.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timesteps", "mean_return", "std_return"])
        for t, r in zip(timesteps, results, strict=True):
            writer.writerow([int(t), f"{np.mean(r):.4f}", f"{np.std(r):.4f}"])
    summary = {
        "env": env,
        "algo": algo,
        "seed": seed,
        "budget": budget,
        "final_timestep": int(timesteps[-1]),
        "final_mean": f"{np.mean(results[-1]):.4f}",
        "final_std": f"{np.std(results[-1]):.4f}",
        "eval_episodes": results.shape[1],
        "n_evals": len(timesteps),
        "train_fps": f"{times['num_timesteps'] / train_s:.1f}",
        "learn_wall_s": f"{times['learn_s']:.2f}",
        "eval_wall_s": f"{times['eval_s']:.2f}",
        "total_wall_s": f"{total:.2f}",
        "hyperparams": ("rl-zoo3" if algo in BASELINES else f"hyperparams/{algo}.yml") + (f" ({key} entry)" if conf else ""),
        "loadavg_start": f"{load_start:.2f}",
        "command": " ".join(
            zoo_command(algo, env, seed, budget, args.eval_freq, args.eval_episodes, "logs", "conf.yml" if conf else None)
        ),
    }
    # Written last: its presence marks the run as done.
    with open(f"{stem}_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerow(summary)
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
    plan, missing = [], []
    for env in args.envs:
        for algo in args.algos:
            budget = run_budget(algo, env, args.n_timesteps, args.max_timesteps)
            if budget is None:
                missing.append(f"{algo} on {env}: no entry in {yml_path(algo)}")
                continue
            for seed in range(args.seed_offset, args.seed_offset + args.seeds):
                plan.append((algo, env, seed, budget))
    for line in missing:
        print(f"skip (no hyperparameters) {line}", flush=True)
    todo = [p for p in plan if not Path(f"{run_stem(Path(args.results_dir), p[1], p[0], p[3], p[2])}_summary.csv").exists()]
    print(f"{len(plan)} runs planned, {len(plan) - len(todo)} already done, {len(todo)} to run", flush=True)
    failures = []
    start = time.perf_counter()

    def report(i, item, result):
        algo, env, seed, budget = item
        elapsed = time.perf_counter() - start
        eta = elapsed / i * (len(todo) - i)
        what = (
            f"final {float(result['final_mean']):.1f}, {float(result['train_fps']):.0f} FPS"
            if isinstance(result, dict)
            else f"FAILED: {result}"
        )
        print(f"[{i}/{len(todo)}] {env} {algo} seed {seed} ({budget} steps): {what} | elapsed {_fmt_time(elapsed)}, "
              f"ETA {_fmt_time(eta)}", flush=True)  # fmt: skip

    def attempt(item):
        try:
            return run_one(*item, args)
        except Exception as exc:  # one failed run must not stop the campaign
            failures.append(f"{item[1]} {item[0]} seed {item[2]}: {exc}")
            return str(exc).splitlines()[0]

    if args.jobs <= 1:
        for i, item in enumerate(todo, 1):
            report(i, item, attempt(item))
    else:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(attempt, item): item for item in todo}
            for i, future in enumerate(as_completed(futures), 1):
                report(i, futures[future], future.result())
    for line in failures:
        print(f"FAILED {line}", file=sys.stderr, flush=True)
    return failures


# ----------------------------------------------------------------------------------- aggregate


def load_summaries(results_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(results_dir.glob("*/*/*_summary.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                row["curve"] = str(path).replace("_summary.csv", "_curve.csv")
                rows.append(row)
    return rows


def _order(items, reference):
    return sorted(items, key=lambda x: (reference.index(x) if x in reference else len(reference), x))


def _by_budget(rows: list[dict]) -> dict:
    """(env, algo, budget) -> runs."""
    by_budget = defaultdict(list)
    for row in rows:
        by_budget[(row["env"], row["algo"], int(row["budget"]))].append(row)
    return by_budget


def cells(rows: list[dict]) -> dict:
    """(env, algo) -> the runs of the budget with most seeds.

    On a tie the zoo budget wins (the campaign's reference budget, even where a reduced run of
    another group went past it, e.g. PPO's 20k on MountainCarContinuous), then the largest.
    """
    by_budget = _by_budget(rows)

    def rank(env, algo, budget, runs):
        return len(runs), budget == zoo_budget(algo, env), budget

    chosen = {}
    for (env, algo, budget), runs in by_budget.items():
        best = chosen.get((env, algo))
        if best is None or rank(env, algo, budget, runs) > rank(env, algo, int(best[0]["budget"]), best):
            chosen[(env, algo)] = runs
    return chosen


def _stats(runs):
    finals = np.array([float(r["final_mean"]) for r in runs])
    fps = np.array([float(r["train_fps"]) for r in runs])
    return finals.mean(), finals.std(), fps.mean()


def budget_label(n: int) -> str:
    """Budget as the tables write it: 200k, 1M, 2.5M."""
    return f"{n // 1000}k" if n % 1000 == 0 and n < 10**6 else (f"{n / 1e6:g}M" if n % 10**5 == 0 else str(n))


def write_results_md(rows: list[dict], docs_dir: Path, interval_lines: list[str]) -> Path:
    """``docs/results.md``: the tables of every cell, the interval estimates (``interval_lines``) and the curves."""
    chosen = cells(rows)
    envs = _order({env for env, _ in chosen}, ENVS)
    algos = _order({algo for _, algo in chosen}, ALL_ALGOS)
    eval_episodes = sorted({r["eval_episodes"] for r in rows})
    lines = [
        "# Benchmark results",
        "",
        "Measured with the campaign harness (`benchmarks/run.py`) on the rl-zoo3 path: each run is",
        "`python -m sb3_pgx.zoo train --algo A --env E --seed S --eval-freq F --eval-episodes K -n BUDGET`",
        "with our `hyperparams/<algo>.yml` for sb3_pgx's algorithms and rl-zoo3 2.9.2's own tuned",
        "hyperparameters for `a2c`, `ppo` (Stable-Baselines3) and `trpo` (sb3-contrib).",
        f"Final figure: the last periodic evaluation (deterministic, {', '.join(eval_episodes)} episodes) at the",
        "end of the budget; mean +- std over seeds of the per-seed mean. Training FPS: environment steps per",
        "second of `learn()` with the evaluation time subtracted, one torch thread, on a shared 2-core CPU",
        "machine shared with other jobs. FPS depends on the load at the time of each run (runs of one campaign",
        "can see very different loads), so compare FPS across columns only roughly; the side-by-side scripts in",
        "[benchmarks.md](benchmarks.md) alternate algorithms for that purpose.",
        "Per-run curves and summaries: `benchmarks/results/campaign/<env>/<algo>/`. This file is generated by",
        "`python -m benchmarks.run --aggregate`; do not edit it by hand.",
        "",
        "## Final evaluation return (mean +- std over seeds; budget and seeds per cell)",
        "",
        "| env | " + " | ".join(algos) + " |",
        "|---|" + "---|" * len(algos),
    ]
    for env in envs:
        cells_txt = []
        for algo in algos:
            runs = chosen.get((env, algo))
            if not runs:
                cells_txt.append("not run")
                continue
            mean, std, _ = _stats(runs)
            cells_txt.append(f"{mean:.1f} +- {std:.1f} ({budget_label(int(runs[0]['budget']))}, {len(runs)}s)")
        lines.append(f"| {env} | " + " | ".join(cells_txt) + " |")
    lines += ["", "## Training FPS (mean over seeds)", ""]
    lines += ["| env | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for env in envs:
        vals = [f"{_stats(chosen[(env, a)])[2]:.0f}" if (env, a) in chosen else "-" for a in algos]
        lines.append(f"| {env} | " + " | ".join(vals) + " |")
    lines += ["", *interval_lines, *vpg_solve_lines(rows)]
    lines += ["", "## Every cell: budget, seeds, per-seed finals and the command", ""]
    lines += ["A budget below the \"zoo budget\" (rl-zoo3's yml for a2c/ppo/trpo, ours for the rest) is a reduced run.", ""]
    lines += ["| env | algo | budget | zoo budget | seeds | per-seed final | train FPS | command (seed 0) |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for env in envs:
        for algo in algos:
            runs = chosen.get((env, algo))
            if not runs:
                continue
            runs = sorted(runs, key=lambda r: int(r["seed"]))
            finals = ", ".join(f"{float(r['final_mean']):.0f}" for r in runs)
            zoo = zoo_budget(algo, env)
            lines.append(f"| {env} | {algo} | {runs[0]['budget']} | {zoo if zoo else '-'} | {len(runs)} | {finals} | "
                         f"{_stats(runs)[2]:.0f} | "
                         f"`{runs[0]['command']}` |")  # fmt: skip
    lines += ["", "## Learning curves", ""]
    for env in envs:
        lines.append(f"![{env}](plots/{env}.png)")
        lines.append("")
    not_run = [e for e in ENVS if e not in envs]
    if not_run:
        lines += ["## Not measured", "", "No runs yet for: " + ", ".join(not_run) + ".", ""]
    docs_dir.mkdir(parents=True, exist_ok=True)
    path = docs_dir / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _solved_threshold(env: str) -> float | None:
    import gymnasium as gym

    return gym.spec(env).reward_threshold


def vpg_solve_lines(rows: list[dict]) -> list[str]:
    """Whether VanillaPG solves the envs it must (gymnasium's ``reward_threshold``), per seed."""
    chosen = cells(rows)
    lines = ["## VanillaPG solves", ""]
    lines += ["VanillaPG must solve " + ", ".join(VPG_MUST_SOLVE) + " (gymnasium's `reward_threshold`):", ""]
    lines += ["| env | threshold | budget | seeds solved | final (mean +- std) |", "|---|---|---|---|---|"]
    for env in VPG_MUST_SOLVE:
        runs = chosen.get((env, "vpg"))
        threshold = _solved_threshold(env)
        if not runs:
            lines.append(f"| {env} | {threshold} | - | not run | - |")
            continue
        solved = sum(float(r["final_mean"]) >= threshold for r in runs)
        mean, std, _ = _stats(runs)
        lines.append(f"| {env} | {threshold} | {budget_label(int(runs[0]['budget']))} | {solved}/{len(runs)} | "
                     f"{mean:.1f} +- {std:.1f} |")  # fmt: skip
    return lines


def _fill_results_block(path: Path, lines: list[str]) -> None:
    """Replace what stands between ``<!-- results:start -->`` and ``<!-- results:end -->`` in ``path``."""
    head, rest = path.read_text().split("<!-- results:start -->", 1)
    _, tail = rest.split("<!-- results:end -->", 1)
    path.write_text(f"{head}<!-- results:start -->\n" + "\n".join(lines) + f"\n<!-- results:end -->{tail}")


def write_readme_table(rows: list[dict], readme: Path) -> Path | None:
    """Fill the README's ``<!-- results:start -->`` block with the summary table (whole numbers)."""
    if not readme.exists() or "<!-- results:start -->" not in readme.read_text():
        return None
    chosen = cells(rows)
    algos = _order({a for _, a in chosen}, ALL_ALGOS)
    lines = ["| env (budget) | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for env in _order({e for e, _ in chosen}, ENVS):
        budgets = sorted({int(chosen[(env, a)][0]["budget"]) for a in algos if (env, a) in chosen})
        vals = []
        for algo in algos:
            if (env, algo) not in chosen:
                vals.append("-")
                continue
            mean, std, _ = _stats(chosen[(env, algo)])
            vals.append(f"{mean:.0f} +- {std:.0f}")
        lines.append(f"| {env} ({', '.join(budget_label(b) for b in budgets)}) | " + " | ".join(vals) + " |")
    _fill_results_block(readme, lines)
    return readme


def write_plots(rows: list[dict], docs_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = cells(rows)
    plots_dir = docs_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for env in _order({env for env, _ in chosen}, ENVS):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for algo in _order({a for e, a in chosen if e == env}, ALL_ALGOS):
            curves = []
            for run in chosen[(env, algo)]:
                data = np.loadtxt(run["curve"], delimiter=",", skiprows=1, ndmin=2)
                curves.append((data[:, 0], data[:, 1]))
            grid = curves[0][0]
            values = np.stack([np.interp(grid, t, r) for t, r in curves])
            mean, std = values.mean(axis=0), values.std(axis=0)
            style = "-" if algo in OURS else "--"
            (line,) = ax.plot(grid, mean, style, label=f"{algo} ({len(curves)} seeds)")
            ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.1)
        ax.set_title(f"{env}: deterministic evaluation return (mean +- std over seeds)")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), title="solid: sb3_pgx\ndashed: baselines",
                  title_fontsize=7)  # fmt: skip
        fig.tight_layout()
        path = plots_dir / f"{env}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def write_algorithm_results(rows: list[dict], docs_dir: Path) -> list[Path]:
    """Fill the ``<!-- results:start -->`` block of each ``docs/algorithms/<algo>.md`` with its pair's envs."""
    from benchmarks.intervals import env_rows, row_cells

    written = []
    for algo in OURS:
        page = docs_dir / "algorithms" / f"{algo}.md"
        if not page.exists() or "<!-- results:start -->" not in page.read_text():
            continue
        base = BASELINE_OF[algo]
        lines = [
            "Campaign ([docs/results.md](../results.md#interval-estimates-rliable), generated by",
            f"`python -m benchmarks.run --aggregate`): deterministic evaluation against `{base}` with rl-zoo3's",
            "tuned hyperparameters, both at the baseline's rl-zoo3 budget; mean over seeds [95% bootstrap interval];",
            "\"ahead\" / \"behind\" where the intervals do not overlap, else \"tie\".",
            "",
            f"| env | budget ({algo} / {base}) | {algo} [95%] | {base} [95%] | verdict |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {row.env} | {row_cells(row)} |" for row in env_rows(rows, algo)]
        _fill_results_block(page, lines)
        written.append(page)
    return written


def aggregate(results_dir: Path, docs_dir: Path) -> tuple[Path | None, list[Path]]:
    rows = load_summaries(results_dir)
    if not rows:
        print(f"no summaries under {results_dir}")
        return None, []
    from benchmarks.intervals import report  # it imports this module

    md = write_results_md(rows, docs_dir, report(rows, docs_dir))
    plots = write_plots(rows, docs_dir)
    write_algorithm_results(rows, docs_dir)
    write_readme_table(rows, docs_dir.parent / "README.md")
    print(f"wrote {md} and {len(plots)} plot(s) under {docs_dir / 'plots'}")
    return md, plots


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--docs-dir", default=str(DOCS_DIR))
    parser.add_argument("--aggregate", action="store_true", help="only rebuild docs/results.md and the plots")
    parser.add_argument("--no-aggregate", action="store_true", help="do not aggregate after the runs")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    failures = []
    if not args.aggregate:
        failures = campaign(args)
    if args.aggregate or not args.no_aggregate:
        aggregate(Path(args.results_dir), Path(args.docs_dir))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
