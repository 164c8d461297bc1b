"""How much do three seeds decide? One of ours against its baseline over many seeds.

The campaign judges each cell on seeds 0-2. Where ours and its baseline are close, that verdict is
a draw from a wide distribution. This script reads runs made by the harness on other seeds, e.g.

    python -m benchmarks.run --algos npg trpo --envs LunarLander-v3 --seeds 20 --seed-offset 200 \\
        --eval-freq 25000 --eval-episodes 5 --results-dir benchmarks/results/seed_study --no-aggregate
    python -m benchmarks.seed_study --pair npg trpo

and writes, per env, a markdown table (``<results-dir>/study.md``) with:

- each algorithm's final evaluation, mean +- sample std (ddof 1) over the seeds, and the mean of each
  run's last ``--last`` evaluations (a smoother reading of where a run ends);
- the difference of the means, ours minus baseline, with Welch's 95% interval and two-sided p-value;
- ``P(3-seed win)``: how often ours' mean over 3 seeds is >= the baseline's mean over 3 seeds, when
  both triples are drawn at random (without replacement) from these runs. This is the chance that
  the campaign's criterion, "ours >= baseline in final return", holds on a fresh set of 3 seeds.
"""

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks.run import REPO, budget_label, load_summaries

STUDY_DIR = REPO / "benchmarks" / "results" / "seed_study"


def last_evaluations_mean(curve_csv: str, last: int) -> float:
    """Mean return of the last ``last`` evaluations of one run's curve CSV."""
    returns = np.loadtxt(curve_csv, delimiter=",", skiprows=1, usecols=1, ndmin=1)
    return float(returns[-last:].mean())


def win_probability(ours: np.ndarray, base: np.ndarray, k: int = 3, draws: int = 20000, seed: int = 0) -> float:
    """P(mean of k of ``ours`` >= mean of k of ``base``), both k-subsets drawn without replacement.

    :param ours: final returns of ours, shape [n_ours] (n_ours >= k)
    :param base: final returns of the baseline, shape [n_base] (n_base >= k)
    """
    rng = np.random.default_rng(seed)

    def subset_means(values: np.ndarray) -> np.ndarray:
        return np.array([rng.choice(values, size=k, replace=False).mean() for _ in range(draws)])

    return float((subset_means(ours) >= subset_means(base)).mean())


def compare(ours: np.ndarray, base: np.ndarray) -> dict:
    """Welch's comparison of two samples of final returns (ours minus baseline)."""
    test = stats.ttest_ind(ours, base, equal_var=False)
    interval = test.confidence_interval(0.95)
    return {
        "difference": float(ours.mean() - base.mean()),
        "low": float(interval.low),
        "high": float(interval.high),
        "p_value": float(test.pvalue),
        "win_3": win_probability(ours, base),
    }


def study_table(results_dir: Path, ours: str, base: str, last: int) -> list[str]:
    runs = defaultdict(list)  # (env, algo, budget) -> rows
    for row in load_summaries(results_dir):
        runs[(row["env"], row["algo"], int(row["budget"]))].append(row)
    lines = [
        f"| env (budget) | seeds | {ours} final | {base} final | {ours} last {last} | {base} last {last} "
        f"| {ours} - {base} (95% CI) | p | P(3-seed win) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for env, budget in sorted({(env, budget) for env, algo, budget in runs if algo == ours}):
        # Only the seeds both have run, so the two columns describe the same seed set.
        ours_seeds, base_seeds = ({r["seed"] for r in runs[(env, algo, budget)]} for algo in (ours, base))
        seeds = sorted(ours_seeds & base_seeds, key=int)
        if len(seeds) < 3:
            continue
        ours_rows, base_rows = ([r for r in runs[(env, algo, budget)] if r["seed"] in seeds] for algo in (ours, base))
        finals = [np.array([float(r["final_mean"]) for r in rows]) for rows in (ours_rows, base_rows)]
        smooth = [np.array([last_evaluations_mean(r["curve"], last) for r in rows]) for rows in (ours_rows, base_rows)]
        c = compare(*finals)
        lines.append(
            f"| {env} ({budget_label(budget)}) | {seeds[0]}-{seeds[-1]} ({len(seeds)}) "
            f"| {finals[0].mean():.0f} +- {finals[0].std(ddof=1):.0f} | {finals[1].mean():.0f} +- {finals[1].std(ddof=1):.0f} "
            f"| {smooth[0].mean():.0f} | {smooth[1].mean():.0f} "
            f"| {c['difference']:+.0f} ({c['low']:+.0f}, {c['high']:+.0f}) | {c['p_value']:.2f} | {c['win_3']:.2f} |"
        )
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=2, metavar=("OURS", "BASELINE"), default=["npg", "trpo"])
    parser.add_argument("--results-dir", type=Path, default=STUDY_DIR)
    parser.add_argument("--last", type=int, default=3, help="evaluations averaged for the smoothed reading")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ours, base = args.pair
    lines = [f"# {ours} against {base} over many seeds", "", *study_table(args.results_dir, ours, base, args.last), ""]
    out = args.results_dir / "study.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
