"""Distributed tuning: two rl-zoo3 ``-optimize`` workers share one Optuna study in a SQLite file.

Runs ``python -m benchmarks.tune`` (two worker processes, one tiny trial each, our VanillaPG sampler,
two seeds a trial) and checks from the storage itself that the one study holds finished trials of
both workers, each scored by the mean over its seeds. The multi-seed objective is also checked
alone, against a fake rl-zoo3 objective.
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
        "--pruner", "none", "--trial-seeds", "2", "--log-dir", str(tmp_path / "logs"),
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
    for trial in finished:
        seed_values = trial.user_attrs["seed_values"]
        assert len(seed_values) == 2
        assert trial.value == pytest.approx(sum(seed_values) / 2)


class _Manager:
    """Stands for rl-zoo3's ExperimentManager: the objective reads its ``seed``."""

    seed = 7


class _Trial:
    def __init__(self):
        self.user_attrs = {}

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def test_a_trial_scores_the_mean_over_its_seeds():
    from benchmarks.tune import mean_over_seeds

    seen = []

    def objective(manager, trial):
        seen.append(manager.seed)
        return {7: 1.0, 8: 2.0, 9: 6.0}[manager.seed]

    manager, trial = _Manager(), _Trial()
    assert mean_over_seeds(objective, 3)(manager, trial) == 3.0
    assert seen == [7, 8, 9]  # one run per seed, consecutive seeds from the manager's
    assert manager.seed == 7  # the next trial starts from the same seed
    assert trial.user_attrs["seed_values"] == [1.0, 2.0, 6.0]


def test_a_pruned_seed_ends_the_trial():
    optuna = pytest.importorskip("optuna")
    from benchmarks.tune import mean_over_seeds

    seen = []

    def objective(manager, trial):
        seen.append(manager.seed)
        if manager.seed == 8:
            raise optuna.TrialPruned()
        return 1.0

    manager, trial = _Manager(), _Trial()
    with pytest.raises(optuna.TrialPruned):
        mean_over_seeds(objective, 3)(manager, trial)
    assert seen == [7, 8]
    assert manager.seed == 7
    assert "seed_values" not in trial.user_attrs
