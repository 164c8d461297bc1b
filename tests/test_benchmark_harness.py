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


def test_vpg_solve_table_counts_solved_seeds():
    from benchmarks.report import vpg_solve_lines

    rows = _rows("vpg", "CartPole-v1", [500.0, 480.0, 400.0])  # solves on 2 of 3 seeds (threshold 475)
    lines = vpg_solve_lines(rows)
    (cartpole,) = [line for line in lines if line.startswith("| CartPole-v1 | 475")]
    assert "| 2/3 |" in cartpole
    assert any(line.startswith("| LunarLander-v3 |") and "not run" in line for line in lines)


def test_a_cell_shows_its_zoo_budget_over_a_larger_reduced_run_with_as_many_seeds():
    from benchmarks.report import cells
    from benchmarks.run import zoo_budget

    env = "MountainCarContinuous-v0"
    zoo = zoo_budget("ppo", env)  # 20k in rl-zoo3's ppo.yml
    rows = _rows("ppo", env, [1.0, 2.0, 3.0], budget=zoo) + _rows("ppo", env, [7.0, 8.0, 9.0], budget=zoo + 30_000)
    assert int(cells(rows)[(env, "ppo")][0]["budget"]) == zoo
    # More seeds still win over the zoo budget, and without a zoo-budget run the largest budget wins.
    more_seeds = _rows("ppo", env, [1.0, 2.0], budget=zoo) + _rows("ppo", env, [7.0, 8.0, 9.0], budget=zoo + 30_000)
    assert int(cells(more_seeds)[(env, "ppo")][0]["budget"]) == zoo + 30_000
    reduced = _rows("ppo", env, [1.0] * 3, budget=5_000) + _rows("ppo", env, [2.0] * 3, budget=10_000)
    assert int(cells(reduced)[(env, "ppo")][0]["budget"]) == 10_000


@pytest.mark.slow
def test_a_study_is_a_configuration_of_the_harness_and_resumes(tmp_path):
    """A side-by-side study (VanillaPG vs A2C) on a tiny budget: one record per run, the table with the verdict
    against the baseline, and ``--append`` skipping the runs the CSV holds."""
    out = tmp_path / "vpg_vs_a2c"
    command = [sys.executable, "-m", "benchmarks.studies", "vpg_vs_a2c", "--seeds", "2", "--timesteps", "512"]
    command += ["--out", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["algo"], r["seed"]) for r in rows] == [("vpg", "0"), ("a2c", "0"), ("vpg", "1"), ("a2c", "1")]
    assert all(int(r["timesteps"]) >= 512 and 8.0 <= float(r["eval_mean"]) <= 500.0 and float(r["fps"]) > 0 for r in rows)
    table = out.with_suffix(".md").read_text()
    assert "python -m benchmarks.studies vpg_vs_a2c --seeds 2" in table and "n_steps=256" in table
    (vpg_line,) = [line for line in table.splitlines() if line.startswith("| CartPole-v1 | vpg | 2 |")]
    assert vpg_line.split(" | ")[-1].rstrip(" |") in ("ahead", "behind", "tie")  # the verdict against a2c

    proc = subprocess.run([*command, "--append", "--seeds", "3"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("(done)") == 4
    with open(out.with_suffix(".csv")) as f:
        assert len(list(csv.DictReader(f))) == 6


def test_study_settings_are_shared_but_for_the_variants_own():
    from argparse import Namespace

    from benchmarks.studies import STUDIES, fps_pair

    args = Namespace(set=[("learning_rate", 3e-3)], timesteps=None, envs=["CartPole-v1"])
    algo, settings = STUDIES["vtrace_sample_efficiency"].settings("none_e2_r4_nostats", "CartPole-v1", args)
    assert algo == "a2c_vtrace" and settings["learning_rate"] == 3e-3 and settings["n_steps"] == 16
    assert (settings["n_epochs"], settings["replay_rollouts"], settings["correction"]) == (2, 4, "none")
    assert settings["log_update_stats"] is False
    # Asynchronous workers share the env's 8 envs: 2 workers of 4, weights every 8 updates.
    _, lagged = STUDIES["vtrace_sample_efficiency"].settings("vtrace_e2_w2_b8", "CartPole-v1", args)
    assert (lagged["n_workers"], lagged["envs_per_worker"], lagged["asynchronous"], lagged["broadcast_interval"]) == (
        2, 4, True, 8,
    )  # fmt: skip
    assert (lagged["n_epochs"], lagged["correction"]) == (2, "vtrace")
    study, args.set = STUDIES["is_family_vs_ppo"], []
    _, mdpo = study.settings("mdpo", "Acrobot-v1", args)  # PPO's 4 epochs of 4096 / 64 minibatches, lr 1e-3
    assert "n_epochs" not in mdpo and mdpo["n_sgd_steps"] == 4 * 64 and mdpo["learning_rate"] == 1e-3
    assert study.settings("ppo", "Acrobot-v1", args)[1]["learning_rate"] == 3e-4
    # An FPS pair shares every setting but ours' own few.
    ours, theirs, _, ours_kwargs, theirs_kwargs, *_ = fps_pair("ispg")
    assert (ours.__name__, theirs.__name__) == ("ImportanceSampledPG", "PPO")
    assert ours_kwargs == {**theirs_kwargs, "min_ess": None}


def test_paired_difference_pairs_runs_by_seed(tmp_path, monkeypatch):
    from benchmarks import harness

    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    rows = [{"algo": algo, "seed": seed, "score": score} for algo, seed, score in
            [("a", 0, 10), ("a", 1, 30), ("a", 2, 5), ("b", 1, 20), ("b", 0, 4), ("b", 3, 99)]]  # fmt: skip
    harness.write_csv(rows, tmp_path / "study.csv")
    mean, low, high = harness.paired_difference("study", "a", "b", "score")
    assert mean == 8.0  # seeds 0 and 1: 10 - 4, 30 - 20 (seeds 2 and 3 ran one variant only)
    assert 6.0 <= low <= mean <= high <= 10.0


def test_a_run_stopped_at_the_threshold_counts_as_done():
    from benchmarks.studies import is_run

    stopped = {"env": "LunarLander-v3", "algo": "a2c", "seed": "0", "timesteps": "100000", "solved_at": "100000"}
    cut = {**stopped, "solved_at": ""}  # interrupted before its budget, never at the threshold
    assert is_run(stopped, "LunarLander-v3", "a2c", 0, 1_000_000)
    assert not is_run(cut, "LunarLander-v3", "a2c", 0, 1_000_000)
    assert not is_run(stopped, "LunarLander-v3", "a2c", 1, 1_000_000)


@pytest.mark.parametrize("algo", ["npg", "trpo"])
def test_update_timer_ends_the_actor_part_where_the_critic_starts(algo):
    """NaturalPG's critic indexes its batch without ``get(batch_size)``: the timer must still see it start, so
    that the actor part (npg_vs_trpo's "actor update ms") is shorter than the whole ``train()``."""
    from benchmarks.harness import algo_class
    from benchmarks.studies import UpdateTimer

    model = algo_class(algo)("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=16, n_critic_updates=5, seed=0, device="cpu")
    timer = UpdateTimer()
    model.learn(64, callback=timer)
    assert len(timer.train_s) == 1
    assert 0 < timer.actor_s[0] < timer.train_s[0]
