"""The campaign's interval estimates (benchmarks/intervals.py) and the verdict rule (benchmarks/harness.py)."""

import csv

import numpy as np
import pytest

pytest.importorskip("rliable")

from benchmarks import harness, intervals  # noqa: E402
from benchmarks.report import load_summaries  # noqa: E402


@pytest.fixture(autouse=True)
def fewer_replications(monkeypatch):
    """The answers below do not depend on the number of bootstrap replications; the run time does."""
    monkeypatch.setattr(intervals, "REPS", 1000)
    monkeypatch.setattr(harness, "REPS", 1000)
    monkeypatch.setattr(intervals, "REPS_SLOW", 200)


# ----------------------------------------------------------------------------- known answers
def test_mean_interval_of_a_constant_is_a_point():
    assert harness.mean_interval(np.array([500.0, 500.0, 500.0])) == (500.0, 500.0, 500.0)


def test_mean_interval_of_a_large_normal_sample_is_the_normal_interval():
    scores = np.random.default_rng(1).normal(10.0, 2.0, size=2000)
    mean, low, high = harness.mean_interval(scores)
    half_width = 1.96 * scores.std(ddof=1) / np.sqrt(len(scores))
    assert mean == pytest.approx(scores.mean())
    assert low == pytest.approx(mean - half_width, abs=0.1 * half_width)
    assert high == pytest.approx(mean + half_width, abs=0.1 * half_width)


def test_iqm_is_the_mean_of_the_middle_half():
    matrix = np.arange(1.0, 9.0).reshape(2, 4)  # runs x envs; middle half of 1..8 is 3..6
    point, low, high = intervals.iqm_intervals({"a": matrix})["a"]
    assert point == pytest.approx(4.5)
    assert 1.0 <= low <= point <= high <= 8.0
    assert intervals.iqm_intervals({"c": np.full((3, 5), 0.7)})["c"] == pytest.approx((0.7, 0.7, 0.7))


def test_probability_of_improvement_known_cases():
    base = np.random.default_rng(2).uniform(size=(4, 3))
    assert intervals.improvement_probability(base + 2.0, base) == pytest.approx((1.0, 1.0, 1.0))
    assert intervals.improvement_probability(base - 2.0, base) == pytest.approx((0.0, 0.0, 0.0))
    assert intervals.improvement_probability(base, base)[0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "ours, base, verdict",
    [((5, 4, 6), (1, 0, 2), "ahead"), ((1, 0, 2), (5, 4, 6), "behind"), ((3, 1, 5), (4, 2, 6), "tie")],
)
def test_env_verdict_from_intervals(ours, base, verdict):
    assert harness.verdict(ours, base) == verdict


def test_normalise_maps_random_to_0_and_best_to_1():
    np.testing.assert_allclose(intervals.normalise(np.array([-100.0, 300.0, 100.0]), -100.0, 300.0), [0.0, 1.0, 0.5])


# ----------------------------------------------------------------------------- a synthetic campaign
def write_run(root, env, algo, budget, seed, curve):
    """A stored run as the campaign writes it: an evaluation curve and a one-row summary."""
    folder = root / env / algo
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"n{budget}_s{seed}_curve.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["timesteps", "mean_return", "std_return"])
        writer.writerows([(t, r, 0.0) for t, r in curve])
    with open(folder / f"n{budget}_s{seed}_summary.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["env", "algo", "seed", "budget", "final_mean", "train_fps"])
        writer.writeheader()
        writer.writerow({"env": env, "algo": algo, "seed": seed, "budget": budget, "final_mean": curve[-1][1], "train_fps": 1})


@pytest.fixture
def campaign(tmp_path, monkeypatch):
    """NaturalPG against TRPO (whose rl-zoo3 budget is 100k on both envs), 3 seeds.

    CartPole: ours ran 200k steps and is at 500 from 100k on, TRPO reaches 150: ahead, read at 100k.
    Acrobot: both at 100k and indistinguishable: a tie.
    """
    root = tmp_path / "campaign"
    for seed in range(3):
        write_run(root, "CartPole-v1", "npg", 200_000, seed, [(50_000, 300 + seed), (100_000, 500), (200_000, 20)])
        write_run(root, "CartPole-v1", "trpo", 100_000, seed, [(50_000, 100), (100_000, 150 + 10 * seed)])
        write_run(root, "Acrobot-v1", "npg", 100_000, seed, [(100_000, -90 + 5 * seed)])
        write_run(root, "Acrobot-v1", "trpo", 100_000, seed, [(100_000, -88 + 5 * seed)])
    random_scores = {"CartPole-v1": 20.0, "Acrobot-v1": -500.0}
    return load_summaries(root), random_scores, tmp_path / "docs"


def test_score_at_reads_the_curve_at_the_budget(tmp_path):
    write_run(tmp_path, "E-v0", "a", 200, 0, [(50, 1.0), (100, 2.0), (200, 3.0)])
    curve = tmp_path / "E-v0" / "a" / "n200_s0_curve.csv"
    assert intervals.score_at(curve, 100) == 2.0
    assert intervals.score_at(curve, 150) is None  # the last evaluation before 150 is 50 short of it
    assert intervals.score_at(curve, 400) is None  # the run never got there


def test_report_on_a_synthetic_campaign_is_right_and_reproducible(campaign):
    rows, random_scores, docs = campaign
    lines = intervals.report(rows, docs, random_scores=random_scores)
    text = "\n".join(lines)

    # Judged at TRPO's budget: ours read from its 200k runs at 100k (500, not its final 20).
    cartpole = next(line for line in lines if line.startswith("| npg | trpo | CartPole-v1 |"))
    assert cartpole.startswith("| npg | trpo | CartPole-v1 | 100k of 200k runs / 100k | 500.0 [500.0, 500.0] | 160.0 [")
    assert cartpole.endswith("| ahead |")
    assert "| npg | trpo | Acrobot-v1 | 100k / 100k | -85.0 [" in text and text.rstrip().count("| tie |") == 1
    # best = the best cell mean: 500 on CartPole (ours), -83 on Acrobot (TRPO's mean).
    assert "| CartPole-v1 | 20.0 | 500.0 |" in text and "| Acrobot-v1 | -500.0 | -83.0 |" in text
    pair = next(line for line in lines if line.startswith("| npg | trpo | 2 | 3 |"))
    # P(ours > base): 1 on CartPole; on Acrobot 3 of the 9 (ours, base) seed pairs have ours ahead.
    assert f"| {(1 + 3 / 9) / 2:.2f} [" in pair and pair.endswith("| met | - |")  # behind on no env
    pictures = {path.name: path.read_bytes() for path in (docs / "plots").iterdir()}
    assert sorted(pictures) == ["intervals_improvement.png", "intervals_iqm.png", "intervals_profiles.png"]
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" for data in pictures.values())

    # The same runs give the same text and the same bytes (the bootstrap is seeded).
    assert intervals.report(rows, docs, random_scores=random_scores) == lines
    assert {path.name: path.read_bytes() for path in (docs / "plots").iterdir()} == pictures


def test_the_readme_block_holds_the_pair_table_and_how_far_the_five_seed_campaign_is(campaign, tmp_path):
    rows, random_scores, docs = campaign
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- pairs:start -->\nstale\n<!-- pairs:end -->\noutro\n")
    lines = intervals.report(rows, docs, random_scores=random_scores, readme=readme)
    text = readme.read_text()
    assert text.startswith("intro\n<!-- pairs:start -->\n| ours | baseline |") and text.endswith("<!-- pairs:end -->\noutro\n")
    assert "stale" not in text
    pair = next(line for line in lines if line.startswith("| npg | trpo | 2 | 3 |"))
    assert pair in text
    assert "1 of 1 pairs meet the goal. 0 of the 72 cells have five seeds" in text

    # Seeds 3 and 4 of TRPO on Acrobot make that cell a five-seed one; ours far below TRPO there is "behind".
    for seed in (3, 4):
        write_run(tmp_path / "campaign", "Acrobot-v1", "trpo", 100_000, seed, [(100_000, -80.0)])
    for seed in range(3):
        write_run(tmp_path / "campaign", "Acrobot-v1", "npg", 100_000, seed, [(100_000, -400.0 - seed)])
    lines = intervals.report(load_summaries(tmp_path / "campaign"), docs, random_scores=random_scores, readme=readme)
    pair = next(line for line in lines if line.startswith("| npg | trpo | 2 | 3 |"))
    assert pair.endswith("| Acrobot-v1 |") and pair in readme.read_text()
    assert "1 of the 72 cells have five seeds" in readme.read_text()


def test_one_seed_has_no_interval_and_no_verdict():
    mean, low, high = harness.mean_interval(np.array([3.0]))
    assert mean == 3.0 and np.isnan(low) and np.isnan(high)
    assert harness.verdict((mean, low, high), (1.0, 0.0, 2.0)) == "no interval (1 seed)"


def test_the_coverage_line_says_when_every_cell_has_five_seeds():
    every_cell = [(env, algo) for env in intervals.ENVS for algo in intervals.ALL_ALGOS]
    rows = [{"env": env, "algo": algo, "budget": 1000, "seed": seed} for env, algo in every_cell for seed in range(5)]
    assert intervals.coverage_line(rows, 5, 6).startswith("5 of 6 pairs meet the goal. All 72 cells have five seeds (0-4);")
    assert sorted(set(intervals.seed_counts(rows))) == [5]

    rows = [row for row in rows if (row["env"], row["algo"]) != every_cell[0] or row["seed"] < 3]
    assert "71 of the 72 cells have five seeds (0-4), the others three;" in intervals.coverage_line(rows, 5, 6)
    assert min(intervals.seed_counts(rows)) == 3
