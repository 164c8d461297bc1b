"""Distributed tuning: two rl-zoo3 ``-optimize`` workers share one Optuna study in a SQLite file.

Runs ``python -m benchmarks.tune`` (two worker processes, one tiny trial each, our VanillaPG sampler)
and checks from the storage itself that the one study holds finished trials of both workers.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path):
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [
        sys.executable, "-m", "benchmarks.tune", "--algo", "vpg", "--env", "CartPole-v1", "--workers", "2",
        "--trials-per-worker", "1", "--n-timesteps", "1000", "--storage", storage, "--study-name", "shared",
        "--pruner", "none", "--log-dir", str(tmp_path / "logs"),
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "study shared by all workers: True" in proc.stdout

    study = optuna.load_study(storage=storage, study_name="shared")
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 2
    assert {t.user_attrs["worker"] for t in finished} == {"worker0", "worker1"}
    assert len({t.user_attrs["pid"] for t in finished}) == 2  # two processes, not two threads
    assert all("n_steps_pow" in t.params and "learning_rate" in t.params for t in finished)  # our sampler ran
