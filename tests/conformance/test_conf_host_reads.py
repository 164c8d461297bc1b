"""At most one host-device sync per gradient step, and no float64 on the device in the hot path.

Without a GPU the syncs are counted where they are made: every call by sb3_pgx code of a
``Tensor`` method that reads a value on the host (``item``, ``tolist``, ``bool(t)``, ``float(t)``,
``numpy``, ``cpu``, ...). Taking more gradient steps in ``train()`` may add at most one such read
per step; figures logged per step must stay tensors until one read per ``train()``. The GPU
itself is checked by ``benchmarks/gpu_check.py`` (``torch.cuda.set_sync_debug_mode``).
"""

import inspect
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch as th
from conftest import ALGORITHMS, TINY_NET
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from test_conf_training_mode import norm_drop

import sb3_pgx
from sb3_pgx import NaturalPG, VanillaPG, VTraceA2C
from sb3_pgx.common.base import without_distribution_checks
from sb3_pgx.common.update_stats import is_mode_dependent

#: Tensor methods that read a value on the host: a device sync on a GPU.
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")
PACKAGE = str(Path(sb3_pgx.__file__).parent)
N_ENVS = 2

#: The argument that sets how many gradient steps one train() takes, the first of these a class has.
STEP_ARGUMENTS = ("n_sgd_steps", "n_critic_updates", "n_epochs")


def fewer_and_more_steps(cls: type) -> tuple[dict, dict]:
    """Constructor arguments for fewer and for more gradient steps in one ``train()``: 2 and 6 of the
    class's own count, with no ESS early stop and, where the batch splits by env, two minibatches."""
    parameters = inspect.signature(cls.__init__).parameters
    extra = {"min_ess": None} if "min_ess" in parameters else {}
    if "n_env_minibatches" in parameters:
        extra["n_env_minibatches"] = 2
    knob = next(name for name in STEP_ARGUMENTS if name in parameters)
    return {knob: 2, **extra}, {knob: 6, **extra}


def counted_train(model, monkeypatch) -> Counter:
    """Count, during each ``train()`` of ``model``, the host reads and ``double()`` calls made by sb3_pgx code."""
    counts, active = Counter(), [False]

    def counting(name, method):
        def wrapper(self, *args, **kwargs):
            if active[0] and sys._getframe(1).f_code.co_filename.startswith(PACKAGE):
                counts[name] += 1
            return method(self, *args, **kwargs)

        return wrapper

    for name in (*HOST_READS, "double"):
        monkeypatch.setattr(th.Tensor, name, counting(name, getattr(th.Tensor, name)))
    train = model.train

    def train_counting():
        active[0] = True
        try:
            train()
        finally:
            active[0] = False

    model.train = train_counting
    return counts


def one_train(algo, kwargs, monkeypatch) -> tuple[Counter, int]:
    """Host reads and float64 conversions of the first ``train()``, and its gradient steps."""
    model = algo.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=0), **kwargs)
    model.set_logger(configure(None, []))
    counts = counted_train(model, monkeypatch)
    model.learn(model.n_steps * N_ENVS)
    assert model._n_updates == 1
    return counts, model.logger.name_to_value["train/sgd_steps"]


@pytest.mark.parametrize("algo", ALGORITHMS, ids=lambda spec: spec.name)
def test_at_most_one_host_read_per_gradient_step(algo, monkeypatch):
    fewer, more = fewer_and_more_steps(algo.cls)
    counts_few, steps_few = one_train(algo, fewer, monkeypatch)
    monkeypatch.undo()
    counts_many, steps_many = one_train(algo, more, monkeypatch)
    assert steps_many > steps_few
    reads_few = sum(counts_few[name] for name in HOST_READS)
    reads_many = sum(counts_many[name] for name in HOST_READS)
    # The reads that do not come with a step (post-update figures, the one read of the logged
    # figures) are the same; each further step adds at most its guard's read.
    assert reads_many - reads_few <= steps_many - steps_few, (counts_few, counts_many)
    # No float64 in the steps: the float64 diagnostics run once per train(), on a CPU copy.
    assert counts_many["double"] == counts_few["double"]


def actor_passes(model) -> list[bool]:
    """Record each pass through the action head during ``train()``: whether the policy was in training mode."""
    passes, train = [], model.train
    model.policy.action_net.register_forward_hook(lambda module, args, output: passes.append(module.training))

    def train_recording():
        passes.clear()
        train()

    model.train = train_recording
    return passes


@pytest.mark.parametrize("mode_dependent", [False, True], ids=["mlp", "batchnorm_dropout"])
def test_natural_pg_forward_passes(mode_dependent):
    """The gradient's pass (also the snapshot, unless the forward depends on the mode) and one after the step."""
    spec = next(spec for spec in ALGORITHMS if spec.cls is NaturalPG)
    kwargs = {"policy_kwargs": norm_drop(0.1)} if mode_dependent else {}
    model = spec.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=0), **kwargs)
    passes = actor_passes(model)
    model.learn(2 * model.n_steps * N_ENVS)
    assert model.mode_dependent == mode_dependent
    if mode_dependent:  # training mode: the gradient's pass; eval mode: the snapshot, the post-update figures
        assert passes == [False, True, False]
    else:  # the same two passes, and no switch of mode (the outputs are the same in both)
        assert passes == [True, True]


@pytest.mark.parametrize("mode_dependent", [False, True], ids=["mlp", "batchnorm_dropout"])
def test_vtrace_forward_passes(mode_dependent):
    """The new rollout's first step takes the buffer's targets; later steps get theirs from the
    gradient's pass unless the forward depends on the mode; one pass for the post-update figures."""
    kwargs = {"policy_kwargs": dict(TINY_NET, **norm_drop(0.1))} if mode_dependent else {}
    env = make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=0)
    model = VTraceA2C("MlpPolicy", env, n_steps=8, n_epochs=3, seed=0, device="cpu", **kwargs)
    passes = actor_passes(model)
    model.learn(2 * 8 * N_ENVS)
    if mode_dependent:  # eval mode: the 2nd and 3rd steps' targets, then the post-update figures
        assert passes == [True, False, True, False, True, False]
    else:  # three gradient passes (training mode), the figures' pass (no switch of mode needed)
        assert passes == [True, True, True, True]


def test_mode_dependence_is_detected():
    class ReadsTraining(th.nn.Module):
        mode_dependent = True

    model = VanillaPG("MlpPolicy", "CartPole-v1", device="cpu")
    assert not is_mode_dependent(model.policy)
    assert is_mode_dependent(th.nn.Sequential(th.nn.Linear(2, 2), th.nn.Dropout(0.1)))
    assert is_mode_dependent(th.nn.BatchNorm1d(3))
    assert is_mode_dependent(th.nn.Sequential(ReadsTraining()))
    assert is_mode_dependent(th.nn.LSTM(2, 2, num_layers=2, dropout=0.5))
    assert not is_mode_dependent(th.nn.LSTM(2, 2))
    assert not is_mode_dependent(th.nn.InstanceNorm1d(3))
    assert is_mode_dependent(th.nn.InstanceNorm1d(3, track_running_stats=True))


def test_distribution_checks_are_off_in_train_and_collection_only(monkeypatch):
    """Their syncs are skipped inside train() and during collection (a NumPy check of each observation
    replaces them there), and the global setting is restored, also after an error."""
    seen, seen_collecting = [], []
    model = VanillaPG("MlpPolicy", make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=0), n_steps=16, device="cpu")
    train = type(model).train.__wrapped__

    def spying_train(self):
        seen.append(th.distributions.Distribution._validate_args)
        train(self)
        raise KeyboardInterrupt

    class Spy(BaseCallback):
        def _on_step(self) -> bool:
            seen_collecting.append(th.distributions.Distribution._validate_args)
            return True

    monkeypatch.setattr(type(model), "train", without_distribution_checks(spying_train))
    before = th.distributions.Distribution._validate_args
    assert before  # torch's default: what users' own code keeps
    with pytest.raises(KeyboardInterrupt):
        model.learn(16 * N_ENVS, callback=Spy())
    assert seen == [False]
    assert seen_collecting == [False] * 16
    assert th.distributions.Distribution._validate_args == before
