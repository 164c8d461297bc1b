"""Performance hygiene: no per-step Python work beyond SB3's, torch threads respected, bounded memory."""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_pgx.common.base import PGAlgorithm

# Methods SB3 calls every environment step: an override would add per-step Python work.
PER_STEP_METHODS = ("_on_step", "_update_info_buffer", "_dump_logs")


def test_collection_is_sb3s(algo):
    """Every algorithm collects with PGAlgorithm.collect_rollouts, which is SB3's loop plus checks once per rollout."""
    assert algo.cls.collect_rollouts is PGAlgorithm.collect_rollouts
    source = inspect.getsource(PGAlgorithm.collect_rollouts)
    assert "super().collect_rollouts(" in source and source.count("for ") == 1  # one loop: over 5 buffer arrays
    for name in PER_STEP_METHODS:
        if hasattr(OnPolicyAlgorithm, name):
            assert getattr(algo.cls, name) is getattr(OnPolicyAlgorithm, name), name


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_threads_respected(algo, threads):
    th.set_num_threads(threads)
    model = algo.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0))
    model.learn(2 * model.n_steps * 2)
    assert th.get_num_threads() == threads


@pytest.mark.slow
def test_memory_does_not_grow():
    """Reduced-scale version of memory_check.py: RSS after 20k and 60k steps, within 15 MiB."""
    script = Path(__file__).with_name("memory_check.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script), "--algo", "VTraceA2C", "--steps", "60000", "--warmup", "20000", "--tolerance-mib", "15"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
