"""Smoke test of the benchmark campaign harness (``python -m benchmarks.run``) on a tiny budget.

Two algorithms (ours and SB3's A2C), one env, one seed, 3k steps, through the real rl-zoo3
path in subprocesses: checks the per-run CSVs, the aggregate table and plot, and that a second
invocation skips the finished runs. About 30 s on one core.
"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _harness(tmp_path: Path, *extra: str) -> str:
    command = [
        sys.executable, "-m", "benchmarks.run", "--algos", "vpg", "a2c", "--envs", "CartPole-v1", "--seeds", "1",
        "--n-timesteps", "3000", "--eval-freq", "1000", "--eval-episodes", "2",
        "--results-dir", str(tmp_path / "results"), "--docs-dir", str(tmp_path / "docs"), "--log-dir", str(tmp_path / "logs"),
        *extra,
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_harness_writes_summaries_table_plot_and_resumes(tmp_path):
    out = _harness(tmp_path)
    assert "2 to run" in out and "[2/2]" in out and "ETA" in out

    for algo in ("vpg", "a2c"):
        stem = tmp_path / "results" / "CartPole-v1" / algo / "n3000_s0"
        with open(f"{stem}_summary.csv") as f:
            (row,) = list(csv.DictReader(f))
        assert row["algo"] == algo and row["env"] == "CartPole-v1" and int(row["budget"]) == 3000
        assert int(row["final_timestep"]) == 3000 and int(row["n_evals"]) == 3 and int(row["eval_episodes"]) == 2
        assert 8.0 <= float(row["final_mean"]) <= 500.0  # a CartPole return
        assert float(row["train_fps"]) > 0
        assert f"--algo {algo}" in row["command"] and "-n 3000" in row["command"]
        with open(f"{stem}_curve.csv") as f:
            curve = list(csv.DictReader(f))
        assert [int(r["timesteps"]) for r in curve] == [1000, 2000, 3000]
        assert float(curve[-1]["mean_return"]) == pytest.approx(float(row["final_mean"]))
    # Logs and models stay in the scratch folder, never next to the summaries.
    assert not list((tmp_path / "results").rglob("*.zip"))
    assert not (tmp_path / "logs" / "CartPole-v1" / "vpg" / "n3000_s0").exists()  # removed once summarised

    table = (tmp_path / "docs" / "results.md").read_text()
    assert "| env | vpg | a2c |" in table
    assert "| CartPole-v1 | " in table and "(3k, 1s)" in table
    assert "plots/CartPole-v1.png" in table
    png = tmp_path / "docs" / "plots" / "CartPole-v1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Second invocation: nothing left to run, the table is rebuilt from the same summaries.
    summary = tmp_path / "results" / "CartPole-v1" / "vpg" / "n3000_s0_summary.csv"
    before = summary.stat().st_mtime_ns
    out = _harness(tmp_path)
    assert "2 already done, 0 to run" in out and "[1/" not in out
    assert summary.stat().st_mtime_ns == before


def _rows(algo, env, finals, budget=1000):
    return [
        {"env": env, "algo": algo, "seed": str(s), "budget": str(budget), "final_mean": str(v), "train_fps": "1000"}
        for s, v in enumerate(finals)
    ]


def test_goal_table_counts_envs_where_ours_reaches_its_baseline():
    from benchmarks.run import ENVS, goal_lines

    rows = []
    # npg: above TRPO on 5 envs, a hair below (within one std) on 1, far below on 2.
    for i, env in enumerate(ENVS):
        rows += _rows("trpo", env, [100.0, 110.0, 90.0])  # mean 100, std 8.2
        ours = {5: [95.0, 100.0, 99.0], 6: [0.0, 1.0, 2.0], 7: [0.0, 1.0, 2.0]}.get(i, [120.0, 121.0, 122.0])
        rows += _rows("npg", env, ours)
    rows += _rows("vpg", "CartPole-v1", [500.0, 480.0, 400.0])  # solves on 2 of 3 seeds (threshold 475)
    lines = goal_lines(rows)
    (npg,) = [line for line in lines if line.startswith("| npg |")]
    assert npg == f"| npg | trpo | 8 | 5 | 6 | no | {ENVS[6]}, {ENVS[7]} |"
    (cartpole,) = [line for line in lines if line.startswith("| CartPole-v1 | 475")]
    assert "| 2/3 |" in cartpole
    assert any(line.startswith("| LunarLander-v3 |") and "not run" in line for line in lines)

    # One more env above TRPO makes the strict count 6 of 8: the goal is met.
    rows = [r for r in rows if not (r["algo"] == "npg" and r["env"] == ENVS[5])] + _rows("npg", ENVS[5], [101.0] * 3)
    (npg,) = [line for line in goal_lines(rows) if line.startswith("| npg |")]
    assert "| 8 | 6 | 6 | yes |" in npg


def test_a_cell_shows_its_zoo_budget_over_a_larger_reduced_run_with_as_many_seeds():
    from benchmarks.run import cells, zoo_budget

    env = "MountainCarContinuous-v0"
    zoo = zoo_budget("ppo", env)  # 20k in rl-zoo3's ppo.yml
    rows = _rows("ppo", env, [1.0, 2.0, 3.0], budget=zoo) + _rows("ppo", env, [7.0, 8.0, 9.0], budget=zoo + 30_000)
    assert int(cells(rows)[(env, "ppo")][0]["budget"]) == zoo
    # More seeds still win over the zoo budget, and without a zoo-budget run the largest budget wins.
    more_seeds = _rows("ppo", env, [1.0, 2.0], budget=zoo) + _rows("ppo", env, [7.0, 8.0, 9.0], budget=zoo + 30_000)
    assert int(cells(more_seeds)[(env, "ppo")][0]["budget"]) == zoo + 30_000
    reduced = _rows("ppo", env, [1.0] * 3, budget=5_000) + _rows("ppo", env, [2.0] * 3, budget=10_000)
    assert int(cells(reduced)[(env, "ppo")][0]["budget"]) == 10_000


def test_a_reduced_cell_is_judged_against_the_baseline_at_its_own_budget():
    from benchmarks.run import baseline_cells, cells, goal_lines, zoo_budget

    env = "HalfCheetah-v5"
    full = zoo_budget("ppo", env)
    assert full == zoo_budget("ispg", env) == 1_000_000
    # ISPG only at 50k; PPO at 50k and at its 1M (the table shows PPO's 1M cell).
    rows = _rows("ispg", env, [800.0, 810.0, 820.0], budget=50_000)
    rows += _rows("ppo", env, [700.0, 750.0, 800.0], budget=50_000) + _rows("ppo", env, [5000.0, 5100.0, 5200.0], budget=full)
    chosen = cells(rows)
    assert int(chosen[(env, "ppo")][0]["budget"]) == full
    (base_runs,) = [baseline_cells(rows, chosen)[(env, "ispg")]]
    assert {int(r["budget"]) for r in base_runs} == {50_000}
    (ispg,) = [line for line in goal_lines(rows) if line.startswith("| ispg |")]
    assert ispg == "| ispg | ppo | 1 | 1 | 1 | (no goal) | - |"
    # Without PPO runs at 50k the full-budget cell is all there is to compare with: short.
    rows = [r for r in rows if not (r["algo"] == "ppo" and r["budget"] == "50000")]
    (ispg,) = [line for line in goal_lines(rows) if line.startswith("| ispg |")]
    assert ispg == f"| ispg | ppo | 1 | 0 | 0 | (no goal) | {env} |"
    # At its zoo budget ours keeps the baseline's own (zoo) cell, even where the baseline also has runs
    # at ours's budget: each is judged at the budget it was tuned for.
    env = "LunarLander-v3"
    vpg_zoo, a2c_zoo = zoo_budget("vpg", env), zoo_budget("a2c", env)
    assert vpg_zoo != a2c_zoo
    rows = _rows("vpg", env, [200.0] * 3, budget=vpg_zoo)
    rows += _rows("a2c", env, [20.0] * 3, budget=a2c_zoo) + _rows("a2c", env, [250.0] * 3, budget=vpg_zoo)
    assert {int(r["budget"]) for r in baseline_cells(rows, cells(rows))[(env, "vpg")]} == {a2c_zoo}
