"""Bad input and faults: invalid arguments, non-finite environments, extreme weights, interrupts."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import ALGORITHMS, COMMON_CONSTRAINTS, all_finite, params_equal
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan

from sb3_pgx import NonFiniteError
from sb3_pgx.common.base import MAX_LOG_WEIGHT, bounded_log_weights
from sb3_pgx.common.surrogate import SurrogateAlgorithm

# ----------------------------------------------------------------------------- constructor arguments

#: Arguments for which None is a valid value (switches the feature off).
OPTIONAL = {"batch_size", "max_weight", "min_ess", "clip_range", "clip_range_vf", "n_sgd_steps"}
#: Arguments for which +inf is a valid value (no truncation).
INF_ALLOWED = {"rho_bar", "c_bar", "pg_rho_bar"}
WRONG_TYPES = st.sampled_from(["0.1", "abc", [1], (1,), {}, True, False, object()])


def invalid_values(name: str, constraint: tuple) -> st.SearchStrategy:
    """Values outside ``constraint``: out of range, NaN, inf, wrong type (and None where it is no default)."""
    bad = [WRONG_TYPES, st.just(math.nan)]
    if name not in OPTIONAL:
        bad.append(st.just(None))
    if constraint[0] == "int":
        low = constraint[1]
        bad += [st.integers(max_value=low - 1), st.floats(allow_nan=False).filter(lambda x: not x.is_integer() or x >= low)]
        bad.append(st.sampled_from([math.inf, -math.inf]))
    else:
        _, low, high, low_open, high_open = constraint
        if low is not None:
            below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False)
            bad += [below, st.just(-math.inf)]
        if high is not None:
            bad.append(st.floats(min_value=high, exclude_min=not high_open, allow_nan=False, allow_infinity=False))
        if name not in INF_ALLOWED:
            bad.append(st.just(math.inf))
    return st.one_of(*bad)


ARGUMENT_CASES = [
    pytest.param(spec, name, constraint, id=f"{spec.name}-{name}")
    for spec in ALGORITHMS
    for name, constraint in {**COMMON_CONSTRAINTS, **spec.constraints}.items()
]
_CHEAP_ENV = DummyVecEnv([lambda: IdentityEnv(2)])


@pytest.mark.parametrize(("spec", "name", "constraint"), ARGUMENT_CASES)
def test_invalid_argument_is_a_value_error_naming_it(spec, name, constraint):
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=invalid_values(name, constraint))
    def check(value):
        with pytest.raises(ValueError, match=name):
            spec.make("MlpPolicy", _CHEAP_ENV, **{name: value})

    check()


def test_valid_boundaries_are_accepted():
    """The strategies above are only meaningful if the boundaries they skirt are valid."""
    for spec in ALGORITHMS:
        spec.make("MlpPolicy", _CHEAP_ENV, gamma=1.0, gae_lambda=0.0, vf_coef=0.0, stats_window_size=1, sde_sample_freq=-1)


#: The minibatch-SGD family, whose batch_size is PPO's (VanillaPG and NaturalPG's only size the critic's regression).
MINIBATCH_ALGORITHMS = [spec for spec in ALGORITHMS if issubclass(spec.cls, SurrogateAlgorithm)]


@pytest.mark.parametrize("spec", MINIBATCH_ALGORITHMS, ids=lambda spec: spec.name)
def test_batch_size_larger_than_the_rollout_is_a_value_error(spec):
    """A PPO user's batch_size=64 with a 16 x 2 rollout must not silently become full-batch steps."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    message = r"batch_size=64 is not allowed: expected an integer in \[1, n_steps \* n_envs = 16 \* 2 = 32\]"
    with pytest.raises(ValueError, match=message):
        spec.make("MlpPolicy", env, n_steps=16, batch_size=64)
    for batch_size in (32, None):  # the whole rollout, either way, is fine
        assert spec.make("MlpPolicy", env, n_steps=16, batch_size=batch_size).batch_size == batch_size


# ----------------------------------------------------------------------------- non-finite environments


class NonFiniteEnv(gym.Env):
    """Returns a NaN/inf observation or reward at step ``bad_step`` (counted over the env's life)."""

    observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)

    def __init__(self, kind: str, bad_step: int, box: bool = False):
        self.kind, self.bad_step, self.t = kind, bad_step, 0
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32) if box else spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.full(3, 0.1, np.float32), {}

    def step(self, action):
        self.t += 1
        bad = self.t == self.bad_step
        obs = np.full(3, np.nan if bad and self.kind == "obs" else 0.1, np.float32)
        reward = {"nan_reward": np.nan, "inf_reward": np.inf}.get(self.kind, 1.0) if bad else 1.0
        return obs, reward, self.t % 5 == 0, False, {}


@pytest.mark.parametrize("bad_step", [16 + 11, 2 * 16], ids=["mid", "last"])
@pytest.mark.parametrize("box", [False, True], ids=["discrete", "box"])
@pytest.mark.parametrize("kind", ["obs", "nan_reward", "inf_reward"])
def test_non_finite_env_is_a_clear_error_and_weights_are_unchanged(algo, kind, box, bad_step):
    model = algo.make("MlpPolicy", NonFiniteEnv(kind, bad_step=bad_step, box=box), n_steps=16)
    model.learn(16)  # one clean update
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    # The bad value comes inside or at the last step of the next rollout (as its bootstrap observation):
    # no step of the update may be taken, including minibatches that do not contain it.
    with pytest.raises(NonFiniteError, match="observation" if kind == "obs" else "rewards"):
        model.learn(16 * 4, reset_num_timesteps=False)
    assert all(th.equal(before[k], v) for k, v in model.policy.state_dict().items())
    assert all_finite(model)


@pytest.mark.parametrize("box", [False, True], ids=["discrete", "box"])
def test_a_non_finite_observation_stops_collection_before_the_policy_acts_on_it(algo, box):
    """Collection runs without torch's argument checks: the observation check of each step must stop it
    before a Gaussian policy turns the NaN into actions that reach the environment."""
    env = NonFiniteEnv("obs", bad_step=3, box=box)
    model = algo.make("MlpPolicy", env, n_steps=16)
    with pytest.raises(NonFiniteError, match="non-finite observation"):
        model.learn(16)
    assert env.t == 3  # no step after the one that returned it


def test_vec_check_nan_wrapper_raises_first(algo):
    env = VecCheckNan(DummyVecEnv([lambda: NonFiniteEnv("nan_reward", bad_step=3)]), raise_exception=True)
    model = algo.make("MlpPolicy", env, n_steps=16)
    with pytest.raises(ValueError, match="(?i)nan"):
        model.learn(32)
    assert all_finite(model)


# ----------------------------------------------------------------------------- extreme importance weights


class _ShiftBehaviourLogProb(BaseCallback):
    """Makes the log-ratios of the rollout +-100: log pi - (log pi -+ 100)."""

    def __init__(self, sign: int):
        super().__init__()
        self.sign = sign

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        log_probs = self.model.rollout_buffer.log_probs
        alternating = np.where(np.arange(log_probs.size).reshape(log_probs.shape) % 2 == 0, 1.0, -1.0)
        signs = alternating if self.sign == 0 else self.sign
        log_probs -= 100.0 * signs


@pytest.mark.parametrize("sign", [1, -1, 0], ids=["plus100", "minus100", "mixed"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_extreme_log_ratios_give_finite_losses(algo, sign, env_id):
    model = algo.make("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0))
    model.set_logger(configure(None, []))
    losses = {}

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_start(self) -> None:  # after each train(), before the logger is dumped again
            losses.update({k: v for k, v in self.model.logger.name_to_value.items() if k.endswith("loss")})

    model.learn(3 * model.n_steps * 2, callback=[_ShiftBehaviourLogProb(sign), Record()])
    assert all_finite(model)
    assert losses and all(math.isfinite(v) for v in losses.values()), losses


def test_bounded_log_weights():
    log_w = th.tensor([-100.0, 0.0, MAX_LOG_WEIGHT, 100.0], requires_grad=True)
    bounded = bounded_log_weights(log_w)
    assert bounded.tolist() == [-100.0, 0.0, MAX_LOG_WEIGHT, MAX_LOG_WEIGHT]
    th.exp(bounded).sum().backward()
    assert log_w.grad[-1] == 0.0 and log_w.grad[1] == 1.0
    assert math.isfinite(math.exp(MAX_LOG_WEIGHT) * 1e6)


# ----------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize("where", ["collection", "train"])
def test_keyboard_interrupt_leaves_a_usable_model(algo, where, tmp_path, monkeypatch):
    model = algo.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0))
    batch = model.n_steps * 2
    model.learn(batch)

    class Interrupt(BaseCallback):
        def _on_step(self) -> bool:
            if self.n_calls == 3:
                raise KeyboardInterrupt
            return True

    if where == "train":
        calls = {"n": 0}
        original = model.optimizer_step

        def interrupted_step(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:  # in the middle of an update
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(model, "optimizer_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        model.learn(10 * batch, reset_num_timesteps=False, callback=Interrupt() if where == "collection" else None)
    monkeypatch.undo()

    model.save(tmp_path / "model.zip")
    loaded = algo.cls.load(tmp_path / "model.zip", env=make_vec_env("CartPole-v1", n_envs=2, seed=1), device="cpu")
    assert params_equal(model, loaded)
    loaded.learn(batch, reset_num_timesteps=False)
    model.learn(batch, reset_num_timesteps=False)  # the interrupted model itself trains on
    assert all_finite(loaded) and all_finite(model)
