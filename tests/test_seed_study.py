"""benchmarks/seed_study.py: its statistics against references computed another way."""

import csv
import itertools

import numpy as np
import pytest

from benchmarks.seed_study import compare, last_evaluations_mean, study_table, win_probability


def exact_win_probability(ours, base, k=3):
    """Enumerate every pair of k-subsets: the exact value win_probability samples."""
    ours_means = [np.mean(c) for c in itertools.combinations(ours, k)]
    base_means = [np.mean(c) for c in itertools.combinations(base, k)]
    return np.mean([o >= b for o in ours_means for b in base_means])


@pytest.mark.parametrize(
    "ours, base",
    [
        ([1.0, 2.0, 3.0, 4.0, 10.0], [0.0, 0.0, 0.0, 5.0, 9.0]),
        ([-100.0, 50.0, 20.0, 80.0], [10.0, 30.0, 25.0, -5.0, 60.0]),
    ],
)
def test_win_probability_matches_enumeration(ours, base):
    exact = exact_win_probability(ours, base)
    assert 0.0 < exact < 1.0  # the cases are not trivial
    assert win_probability(np.array(ours), np.array(base)) == pytest.approx(exact, abs=0.015)


def test_win_probability_extremes_and_ties():
    assert win_probability(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0, 3.0])) == 1.0
    assert win_probability(np.array([1.0, 2.0, 3.0]), np.array([5.0, 6.0, 7.0])) == 0.0
    # a tie counts for ours (the campaign's criterion is ">=")
    assert win_probability(np.array([2.0, 2.0, 2.0]), np.array([2.0, 2.0, 2.0])) == 1.0


def test_compare_matches_welch_by_hand():
    ours = np.array([3.0, 5.0, 9.0, 11.0])
    base = np.array([1.0, 2.0, 4.0, 4.0, 8.0])
    va, vb = ours.var(ddof=1) / len(ours), base.var(ddof=1) / len(base)
    t = (ours.mean() - base.mean()) / np.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(ours) - 1) + vb**2 / (len(base) - 1))
    from scipy.stats import t as student

    half_width = student.ppf(0.975, dof) * np.sqrt(va + vb)
    result = compare(ours, base)
    assert result["difference"] == pytest.approx(ours.mean() - base.mean())
    assert result["p_value"] == pytest.approx(2 * student.sf(abs(t), dof))
    assert result["low"] == pytest.approx(result["difference"] - half_width)
    assert result["high"] == pytest.approx(result["difference"] + half_width)


def _write_run(results_dir, env, algo, seed, finals_curve):
    folder = results_dir / env / algo
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"n1000_s{seed}"
    with open(f"{stem}_curve.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timesteps", "mean_return", "std_return"])
        for i, value in enumerate(finals_curve):
            writer.writerow([(i + 1) * 100, value, 0.0])
    with open(f"{stem}_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["env", "algo", "seed", "budget", "final_mean"])
        writer.writeheader()
        writer.writerow(dict(env=env, algo=algo, seed=seed, budget=1000, final_mean=finals_curve[-1]))


def test_study_table_reads_harness_layout(tmp_path):
    for seed in range(4):
        _write_run(tmp_path, "Toy-v0", "npg", seed, [0.0, 11.0, 20.0 + 2 * seed])
        _write_run(tmp_path, "Toy-v0", "trpo", seed, [0.0, 5.0, 10.0 + 2 * seed])
    assert last_evaluations_mean(str(tmp_path / "Toy-v0" / "npg" / "n1000_s0_curve.csv"), 2) == pytest.approx(15.5)
    _write_run(tmp_path, "Toy-v0", "npg", 4, [0.0, 0.0, -1000.0])  # no trpo run for seed 4: left out
    lines = study_table(tmp_path, "npg", "trpo", last=2)
    assert len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[0] == "Toy-v0 (1k)" and cells[1] == "0-3 (4)"
    assert cells[2].startswith("23 +- ") and cells[3].startswith("13 +- ")
    assert cells[4] == "17" and cells[5] == "9"  # 15.5 + seed and 7.5 + seed, averaged over seeds 0-3
    assert cells[6].startswith("+10 ")
    assert cells[8] == "1.00"
