"""Performance hygiene: no per-step Python work beyond SB3's but one observation check, torch threads
respected, bounded memory."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

import sb3_pgx
from sb3_pgx.common.base import PGAlgorithm

PACKAGE_DIR = str(Path(sb3_pgx.__file__).parent)

# Methods SB3 calls every environment step: an override would add per-step Python work.
PER_STEP_METHODS = ("_on_step", "_update_info_buffer", "_dump_logs")


def sb3_pgx_calls_while_collecting(algo, n_steps: int) -> Counter:
    """The calls into sb3_pgx's own code, by function name, while the algorithm collects one rollout."""
    model = algo.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=n_steps)
    _, callback = model._setup_learn(10 * n_steps)
    calls: Counter = Counter()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGE_DIR):
            calls[frame.f_code.co_name] += 1

    sys.setprofile(profile)
    try:
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_steps)
    finally:
        sys.setprofile(None)
    return calls


#: The per-step work sb3_pgx adds to collection: the observation check (which stands in for torch's
#: per-step argument checks), its helpers and the generator it checks the arrays with.
OBSERVATION_CHECK = {"_on_step", "_check_observations", "_all_finite", "<genexpr>"}


def test_collection_is_sb3s(algo):
    """Every algorithm collects with SB3's loop. The work sb3_pgx adds is once per rollout (the same for a
    rollout of 8 steps as for one of 64) but for one observation check per step, and SB3's per-step methods
    are not overridden."""
    assert algo.cls.collect_rollouts is PGAlgorithm.collect_rollouts
    short, long = sb3_pgx_calls_while_collecting(algo, 8), sb3_pgx_calls_while_collecting(algo, 64)
    assert short["collect_rollouts"] == 1  # the profile sees our code
    per_step = long - short
    assert set(per_step) <= OBSERVATION_CHECK, per_step
    assert per_step["_on_step"] == per_step["_check_observations"] == 64 - 8  # one check per step
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
