"""Interval estimates of the campaign (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice").

Each of ours is judged against its baseline from the stored runs, with ``rliable``:

- **Equal budgets.** A pair is judged at the baseline's rl-zoo3 budget on each env. Every run's
  score is its deterministic evaluation at that budget, read from its stored curve (the last
  evaluation at or before it). Where ours never ran that long, both are read at ours' longest budget.
- **Per cell:** the mean over seeds with a 95% bootstrap interval; **per env:** the verdict of
  :func:`benchmarks.harness.verdict` (ahead / behind when the intervals do not overlap, else tie).
- **Normalised scores** per env: ``(score - random) / (best - random)``, where ``random`` is a
  uniform-random policy's mean return (:data:`RANDOM_SCORES`, ``python -m benchmarks.run
  --random-scores 100``) and ``best`` the best cell mean of any algorithm on that env.
- **Per pair**, over the envs: the IQM of normalised scores with stratified-bootstrap 95% intervals,
  the probability of improvement with its interval, and performance profiles. Goal of a pair:
  probability of improvement >= 0.5, and ours' IQM interval overlapping or above the baseline's.

:func:`report` writes the section of ``docs/results.md`` and ``docs/plots/intervals_*.png``; the
bootstrap is seeded, so the same runs give the same files.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.harness import ALL_ALGOS, BASELINE_OF, REPS, RESULTS, SEED, mean_interval, read_csv, table, verdict, write_csv
from benchmarks.report import budget_label, cells, fill_results_block, order
from benchmarks.run import ENVS, zoo_budget

RANDOM_SCORES = RESULTS / "random_scores.csv"
#: Bootstrap replications of the (slower) probability of improvement and performance profiles.
REPS_SLOW = 1_000
#: Normalised-score thresholds of the performance profiles.
TAUS = np.linspace(-0.5, 1.25, 36)


@dataclass
class Cell:
    """Scores of one algorithm on one env at one budget, a seed each."""

    scores: np.ndarray
    seeds: list[int]
    budget: int  # the budget the scores are read at
    run_budget: int  # the budget the runs were made with (>= budget)

    @property
    def label(self) -> str:
        read = budget_label(self.budget)
        return read if self.run_budget == self.budget else f"{read} of {budget_label(self.run_budget)} runs"


def score_at(curve: str | Path, budget: int) -> float | None:
    """The evaluation return at ``budget`` from a stored curve: the last evaluation at or before it.

    None when the curve has no evaluation within 10% of ``budget`` below it (the run is too short).
    """
    data = np.loadtxt(curve, delimiter=",", skiprows=1, ndmin=2)
    before = data[data[:, 0] <= budget]
    if len(before) == 0 or before[-1, 0] < 0.9 * budget:
        return None
    return float(before[-1, 1])


def cell_at(rows: Sequence[dict], env: str, algo: str, budget: int) -> Cell | None:
    """The runs of ``algo`` on ``env`` read at ``budget``: from the group of runs (one budget) with most
    seeds among those at least that long, the shortest on a tie; None if no run reaches ``budget``."""
    groups: dict[int, list[dict]] = {}
    for row in rows:
        if row["env"] == env and row["algo"] == algo and int(row["budget"]) >= budget:
            groups.setdefault(int(row["budget"]), []).append(row)
    if not groups:
        return None
    run_budget = max(groups, key=lambda b: (len(groups[b]), -b))
    runs = sorted(groups[run_budget], key=lambda r: int(r["seed"]))
    scores = [score_at(r["curve"], budget) for r in runs]
    if any(score is None for score in scores):
        return None
    return Cell(np.array(scores), [int(r["seed"]) for r in runs], budget, run_budget)


def pair_cells(rows: Sequence[dict], ours: str, base: str) -> dict[str, tuple[Cell, Cell]]:
    """env -> (ours, baseline) read at the same budget: the baseline's zoo budget, or ours' longest if shorter."""
    pairs = {}
    for env in ENVS:
        budget, ours_budgets = zoo_budget(base, env), [int(r["budget"]) for r in rows if (r["env"], r["algo"]) == (env, ours)]
        if budget is None or not ours_budgets:
            continue
        budget = min(budget, max(ours_budgets))
        ours_cell, base_cell = cell_at(rows, env, ours, budget), cell_at(rows, env, base, budget)
        if ours_cell is not None and base_cell is not None:
            pairs[env] = (ours_cell, base_cell)
    return pairs


def load_random_scores(path: Path = RANDOM_SCORES) -> dict[str, float]:
    return {row["env"]: float(row["mean_return"]) for row in read_csv(path)}


def measure_random_scores(envs: Sequence[str], episodes: int, path: Path = RANDOM_SCORES) -> None:
    """Mean return of a uniform-random policy on each env (``action_space.sample()``), seeded."""
    import gymnasium as gym

    rows = []
    for env_id in envs:
        env = gym.make(env_id)
        env.action_space.seed(SEED)
        returns = []
        for episode in range(episodes):
            env.reset(seed=SEED + episode)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        env.close()
        rows.append({"env": env_id, "episodes": episodes, "mean_return": f"{np.mean(returns):.4f}",
                     "std_return": f"{np.std(returns):.4f}"})  # fmt: skip
        print(f"{env_id}: random policy {np.mean(returns):.1f} +- {np.std(returns):.1f} over {episodes} episodes")
    write_csv(rows, path)


# ----------------------------------------------------------------------------- statistics (rliable)
def _seed_bootstrap() -> None:
    """Seed rliable's stratified bootstraps: they draw their resamples from numpy's global RNG."""
    np.random.seed(SEED)  # noqa: NPY002


def iqm_intervals(score_matrices: dict[str, np.ndarray]) -> dict[str, tuple[float, float, float]]:
    """IQM over runs and envs of each ``[runs, envs]`` matrix, with its stratified-bootstrap 95% interval."""
    from rliable import library as rly
    from rliable import metrics

    _seed_bootstrap()
    point, interval = rly.get_interval_estimates(score_matrices, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=REPS)
    return {key: (float(point[key][0]), float(interval[key][0, 0]), float(interval[key][1, 0])) for key in point}


def improvement_probability(ours: np.ndarray, base: np.ndarray) -> tuple[float, float, float]:
    """P(ours > baseline) averaged over envs (``[runs, envs]`` each), with its 95% interval."""
    from rliable import library as rly
    from rliable import metrics

    _seed_bootstrap()
    point, interval = rly.get_interval_estimates({"pair": (ours, base)}, metrics.probability_of_improvement, reps=REPS_SLOW)
    low, high = np.ravel(interval["pair"])
    return float(point["pair"]), float(low), float(high)


@dataclass
class EnvRow:
    """One env of a pair: both cells at the same budget, their ``(mean, low, high)`` and the verdict."""

    env: str
    ours: Cell
    base: Cell
    ours_interval: tuple[float, float, float]
    base_interval: tuple[float, float, float]

    @property
    def verdict(self) -> str:
        return verdict(self.ours_interval, self.base_interval)


def env_rows(rows: Sequence[dict], ours: str) -> list[EnvRow]:
    """Every env on which ``ours`` and its baseline can be compared at one budget, in campaign order."""
    cells = pair_cells(rows, ours, BASELINE_OF[ours])
    return [EnvRow(env, o, b, mean_interval(o.scores), mean_interval(b.scores)) for env, (o, b) in cells.items()]


def normalise(score: np.ndarray, random: float, best: float) -> np.ndarray:
    return (np.asarray(score, dtype=float) - random) / (best - random)


# ----------------------------------------------------------------------------- the report
@dataclass
class PairResult:
    ours: str
    base: str
    envs: list[str]
    cells: dict[str, tuple[Cell, Cell]]
    ours_matrix: np.ndarray  # [runs, envs], normalised
    base_matrix: np.ndarray

    def iqm(self) -> dict[str, tuple[float, float, float]]:
        """IQM of ours and of the baseline over this pair's envs, as read for this pair."""
        return iqm_intervals({self.ours: self.ours_matrix, self.base: self.base_matrix})

    def base_at_own_budget(self) -> int:
        """On how many envs the baseline is read at the budget its runs were made with."""
        return sum(base.budget == base.run_budget for _, base in self.cells.values())

    def goal(self, iqm: dict[str, tuple[float, float, float]], poi: tuple[float, float, float]) -> bool:
        """P(ours > base) >= 0.5 and ours' IQM interval overlapping or above the baseline's."""
        return poi[0] >= 0.5 and iqm[self.ours][2] >= iqm[self.base][1]


def _matrix(cells: Sequence[Cell], random: Sequence[float], best: Sequence[float]) -> np.ndarray:
    """``[runs, envs]`` normalised scores over the seeds every cell has."""
    seeds = sorted(set.intersection(*(set(cell.seeds) for cell in cells)))
    columns = []
    for cell, low, high in zip(cells, random, best, strict=True):
        columns.append(normalise(cell.scores[[cell.seeds.index(seed) for seed in seeds]], low, high))
    return np.stack(columns, axis=1)


def pair_results(rows: Sequence[dict], random_scores: dict[str, float]) -> tuple[list[PairResult], dict[str, float]]:
    """Every pair's cells and normalised matrices, and the ``best`` score of each env."""
    pairs = {ours: pair_cells(rows, ours, base) for ours, base in BASELINE_OF.items()}
    best: dict[str, float] = {}
    for pair in pairs.values():
        for env, (ours_cell, base_cell) in pair.items():
            best[env] = max(best.get(env, -np.inf), ours_cell.scores.mean(), base_cell.scores.mean())
    results = []
    for ours, pair in pairs.items():
        envs = [env for env in ENVS if env in pair and env in random_scores]
        if not envs:
            continue
        rand, top = [random_scores[e] for e in envs], [best[e] for e in envs]
        results.append(PairResult(
            ours, BASELINE_OF[ours], envs, pair,
            _matrix([pair[e][0] for e in envs], rand, top), _matrix([pair[e][1] for e in envs], rand, top),
        ))  # fmt: skip
    return results, best


def report(
    rows: Sequence[dict], docs_dir: Path, random_scores: dict[str, float] | None = None, readme: Path | None = None
) -> list[str]:
    """The markdown section of ``docs/results.md``; writes the figures under ``docs_dir / "plots"`` and, with
    ``readme``, the per-pair table into its ``<!-- pairs:start -->`` block."""
    random_scores = load_random_scores() if random_scores is None else random_scores
    results, best = pair_results(rows, random_scores)
    # A pair's IQMs are of its own reading (a baseline is read at ours' budget where ours ran shorter).
    # The figure of all nine shows each of ours from its pair, and a baseline in several pairs (PPO is
    # in three) from the widest pair that reads it most at its own budgets.
    pair_iqm = {(r.ours, r.base): r.iqm() for r in results}
    iqm, chosen = {}, {}
    for result in results:
        iqm[result.ours] = pair_iqm[(result.ours, result.base)][result.ours]
        rank = (result.base_matrix.size, result.base_at_own_budget())
        if rank > chosen.get(result.base, (-1, -1)):
            chosen[result.base] = rank
            iqm[result.base] = pair_iqm[(result.ours, result.base)][result.base]
    algos = order(set(iqm), ALL_ALGOS)
    poi = {(r.ours, r.base): improvement_probability(r.ours_matrix, r.base_matrix) for r in results}

    lines = [
        "## Interval estimates (rliable)",
        "",
        "Each pair is judged at the baseline's rl-zoo3 budget on every env, ours read from its stored curve at",
        "that budget (`B of L runs`: read at B from runs of budget L). Per cell: mean over seeds [95% bootstrap",
        "interval]. Verdict per env: \"ahead\" / \"behind\" when the two intervals do not overlap, else \"tie\".",
        "Normalised score: `(score - random) / (best - random)` with a uniform-random policy's mean return",
        "(`benchmarks/results/random_scores.csv`) and the best cell mean of any algorithm on that env. Per pair:",
        "IQM of normalised scores over seeds and envs with stratified-bootstrap 95% intervals, and the",
        "probability that ours beats the baseline on an env (P(ours > base)) with its 95% interval. Goal: P >= 0.5",
        f"and ours' IQM interval overlapping or above the baseline's. Bootstrap: {REPS} replications",
        f"({REPS_SLOW} for P and the profiles), seeded. With {min(seed_counts(rows), default=0)} seeds in a cell a",
        "percentile-bootstrap interval is narrow and covers less than 95%: read \"ahead\"/\"behind\" as a strong",
        "hint, not a test.",
        "",
    ]
    judged = [env for env in ENVS if env in best and env in random_scores]
    lines += table(["env", "random", "best"], [[env, f"{random_scores[env]:.1f}", f"{best[env]:.1f}"] for env in judged])
    lines += ["", "### Per pair", ""]
    per_env = {result.ours: env_rows(rows, result.ours) for result in results}  # each cell's interval, once
    per_pair, met = [], 0
    for result in results:
        this = pair_iqm[(result.ours, result.base)]
        p = poi[(result.ours, result.base)]
        met += result.goal(this, p)
        behind = [row.env for row in per_env[result.ours] if row.verdict == "behind"]
        per_pair.append([result.ours, result.base, len(result.envs), result.ours_matrix.shape[0],
                         *(f"{x[0]:.2f} [{x[1]:.2f}, {x[2]:.2f}]" for x in (this[result.ours], this[result.base], p)),
                         "met" if result.goal(this, p) else "**missed**", ", ".join(behind) or "-"])  # fmt: skip
    header = ["ours", "baseline", "envs", "seeds", "ours IQM [95%]", "baseline IQM [95%]", "P(ours > base) [95%]", "goal",
              "behind on"]  # fmt: skip
    pair_table = table(header, per_pair)
    lines += pair_table
    if readme is not None and readme.exists() and "<!-- pairs:start -->" in readme.read_text():
        fill_results_block(readme, [*pair_table, "", coverage_line(rows, met, len(results))], marker="pairs")
    lines += ["", "### Per env", ""]
    lines += table(["ours", "baseline", "env", "budget", "ours [95%]", "baseline [95%]", "verdict"], [])
    for result in results:
        lines += [f"| {result.ours} | {result.base} | {row.env} | {row_cells(row)} |" for row in per_env[result.ours]]
    figures = write_figures(docs_dir / "plots", algos, iqm, poi, results)
    lines += ["", *[f"![{name}](plots/{path.name})" for name, path in figures.items()], ""]
    return lines


def seed_counts(rows: Sequence[dict]) -> list[int]:
    """The number of seeds of each stored cell (the budget :func:`cells` reads)."""
    return [len({int(run["seed"]) for run in runs}) for runs in cells(list(rows)).values()]


def coverage_line(rows: Sequence[dict], met: int, pairs: int) -> str:
    """How many pairs meet the goal, and how many cells the five-seed campaign has reached."""
    total = len(ENVS) * len(ALL_ALGOS)
    five = sum(count >= 5 for count in seed_counts(rows))
    if five == total:
        seeds = f"All {total} cells have five seeds (0-4)"
    else:
        seeds = f"{five} of the {total} cells have five seeds (0-4), the others three"
    return (f"{met} of {pairs} pairs meet the goal. {seeds}; each side of a pair uses the seeds that all of its "
            "own cells have (\"seeds\": ours').")  # fmt: skip


def row_cells(row: EnvRow) -> str:
    """``budget | ours [95%] | baseline [95%] | verdict`` of a table row."""
    o, b = row.ours_interval, row.base_interval
    return (f"{row.ours.label} / {row.base.label} | {o[0]:.1f} [{o[1]:.1f}, {o[2]:.1f}] | "
            f"{b[0]:.1f} [{b[1]:.1f}, {b[2]:.1f}] | {row.verdict}")  # fmt: skip


def write_figures(plots_dir: Path, algos, iqm, poi, results) -> dict[str, Path]:
    """IQM intervals of all algorithms, probability of improvement per pair, performance profiles per pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    points = {algo: np.array([iqm[algo][0]]) for algo in algos}
    intervals = {algo: np.array([[iqm[algo][1]], [iqm[algo][2]]]) for algo in algos}
    fig, _ = plot_utils.plot_interval_estimates(points, intervals, metric_names=["IQM"], algorithms=algos,
                                                xlabel="normalised score", xlabel_y_coordinate=-0.12)  # fmt: skip
    paths["IQM of normalised scores, 95% stratified-bootstrap intervals"] = _save(fig, plots_dir / "intervals_iqm.png")

    pairs = {f"{ours},{base}": np.array(p[0]) for (ours, base), p in poi.items()}
    pair_cis = {f"{ours},{base}": np.array([p[1], p[2]]) for (ours, base), p in poi.items()}
    ax = plot_utils.plot_probability_of_improvement(pairs, pair_cis, xlabel="P(ours > baseline)")
    paths["Probability of improvement per pair"] = _save(ax.get_figure(), plots_dir / "intervals_improvement.png")

    n_rows = -(-len(results) // 3)
    fig, axes = plt.subplots(n_rows, 3, figsize=(15, 4 * n_rows), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.set_axis_off()
    for ax, result in zip(axes.flat, results, strict=False):
        scores = {result.ours: result.ours_matrix, result.base: result.base_matrix}
        _seed_bootstrap()
        profiles, cis = rly.create_performance_profile(scores, TAUS, reps=REPS_SLOW)
        plot_utils.plot_performance_profiles(profiles, TAUS, performance_profile_cis=cis,
                                             colors={result.ours: "C0", result.base: "C1"}, xlabel="normalised score tau",
                                             ax=ax, legend=True)  # fmt: skip
        ax.set_title(f"{result.ours} vs {result.base}")
    fig.tight_layout()
    paths["Performance profiles per pair (share of runs above tau)"] = _save(fig, plots_dir / "intervals_profiles.png")
    return paths


def _save(fig, path: Path) -> Path:
    # No date or version in the file's metadata: the same runs give the same bytes.
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
