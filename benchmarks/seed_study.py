"""How much do three seeds decide? One of ours against its baseline over many seeds.

Reads campaign runs made on other seeds (``python -m benchmarks.run ... --seeds 20 --seed-offset 200
--results-dir benchmarks/results/seed_study --no-aggregate``; commands in ``docs/benchmarks.md``) and
writes per env a table (``<results-dir>/study.md``): each algorithm's final evaluation, mean +- sample
std (ddof 1), and the mean of each run's last ``--last`` evaluations; the difference of the means with
Welch's 95% interval and p-value; and ``P(3-seed win)``, how often ours' mean over 3 seeds is >= the
baseline's when both triples are drawn at random from these runs.
"""

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks.harness import RESULTS, table
from benchmarks.report import budget_label, load_summaries


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
    body = []
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
        body.append([
            f"{env} ({budget_label(budget)})", f"{seeds[0]}-{seeds[-1]} ({len(seeds)})",
            *(f"{f.mean():.0f} +- {f.std(ddof=1):.0f}" for f in finals), *(f"{s.mean():.0f}" for s in smooth),
            f"{c['difference']:+.0f} ({c['low']:+.0f}, {c['high']:+.0f})", f"{c['p_value']:.2f}", f"{c['win_3']:.2f}",
        ])  # fmt: skip
    header = ["env (budget)", "seeds", f"{ours} final", f"{base} final", f"{ours} last {last}", f"{base} last {last}",
              f"{ours} - {base} (95% CI)", "p", "P(3-seed win)"]  # fmt: skip
    return table(header, body)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=2, metavar=("OURS", "BASELINE"), default=["npg", "trpo"])
    parser.add_argument("--results-dir", type=Path, default=RESULTS / "seed_study")
    parser.add_argument("--last", type=int, default=3, help="evaluations averaged for the smoothed reading")
    args = parser.parse_args(argv)
    ours, base = args.pair
    lines = [f"# {ours} against {base} over many seeds", "", *study_table(args.results_dir, ours, base, args.last), ""]
    out = args.results_dir / "study.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
