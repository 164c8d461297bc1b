"""benchmarks/gpu_check.py: it skips cleanly without a GPU, and its placement check names what is off it."""

import os
import subprocess
import sys
from pathlib import Path

from stable_baselines3.common.env_util import make_vec_env

from benchmarks.gpu_check import SKIP_MESSAGE, off_gpu_tensors
from sb3_pgx import AdaptiveKLPPO

ROOT = Path(__file__).resolve().parents[1]


def test_skips_without_a_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device, even on a machine with one
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == SKIP_MESSAGE
    assert "skipped" in SKIP_MESSAGE


def test_placement_check_names_every_tensor_off_the_gpu():
    model = AdaptiveKLPPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=16, batch_size=16, device="cpu")
    model.learn(32)  # the optimiser has state now
    names = off_gpu_tensors(model)
    assert {f"parameter {name}" for name, _ in model.policy.named_parameters()} <= set(names)
    assert any(name.startswith("optimizer state") and name.endswith("exp_avg") for name in names)
    assert not any(name.endswith(".step") for name in names)  # torch keeps the step counters on the CPU
