"""Save/load, parameters, and continued training keep every piece of algorithm state."""

import numpy as np
import pytest
import torch as th
from conftest import params_equal
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import set_random_seed


def _env(n_envs=2, seed=0):
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)


def _optimizer_state_equal(a, b) -> bool:
    sa, sb = a.policy.optimizer.state_dict(), b.policy.optimizer.state_dict()
    if sa["param_groups"] != sb["param_groups"] or sa["state"].keys() != sb["state"].keys():
        return False
    for key, state in sa["state"].items():
        for name, value in state.items():
            other = sb["state"][key][name]
            if isinstance(value, th.Tensor) and not th.equal(value, other):
                return False
    return True


def _continue(model, env_seed: int, timesteps: int):
    """Continue training from a fresh env and a fixed RNG state (the same for an original and its copy)."""
    model.set_env(_env(seed=env_seed))
    model._last_obs = None  # the env is fresh: reset it at the start of learn
    set_random_seed(env_seed)
    model.learn(timesteps, reset_num_timesteps=False)
    return model


def test_save_load_round_trip_continues_identically(algo, tmp_path):
    obs = _env().reset()
    model = algo.make("MlpPolicy", _env(), learning_rate=lambda p: 1e-3 * p)
    model.learn(3 * model.n_steps * 2)
    model.save(tmp_path / "model.zip")
    loaded = algo.cls.load(tmp_path / "model.zip", env=_env(), device="cpu")

    assert params_equal(model, loaded)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert _optimizer_state_equal(model, loaded)
    for attr in ("num_timesteps", "_n_updates", "_total_timesteps", "_current_progress_remaining", *algo.state_attrs):
        assert getattr(model, attr) == getattr(loaded, attr), attr

    if hasattr(model, "replay_store"):
        # Documented: the replay store is not saved; a loaded model starts with an empty one.
        assert len(model.replay_store) > 0 and len(loaded.replay_store) == 0
        model.replay_store.clear()

    _continue(model, env_seed=5, timesteps=2 * model.n_steps * 2)
    _continue(loaded, env_seed=5, timesteps=2 * loaded.n_steps * 2)
    assert params_equal(model, loaded)
    assert _optimizer_state_equal(model, loaded)
    for attr in ("num_timesteps", "_n_updates", *algo.state_attrs):
        assert getattr(model, attr) == getattr(loaded, attr), attr


def test_load_with_other_env_and_n_envs(algo, tmp_path):
    model = algo.make("MlpPolicy", _env(n_envs=2))
    model.learn(2 * model.n_steps * 2)
    model.save(tmp_path / "model.zip")
    loaded = algo.cls.load(tmp_path / "model.zip", env=_env(n_envs=3), device="cpu")
    assert loaded.n_envs == 3
    loaded.learn(2 * loaded.n_steps * 3, reset_num_timesteps=False)
    assert loaded.num_timesteps == 2 * model.n_steps * 2 + 2 * loaded.n_steps * 3


def test_load_without_env_predicts(algo, tmp_path):
    model = algo.make("MlpPolicy", _env())
    model.learn(model.n_steps * 2)
    model.save(tmp_path / "model")
    loaded = algo.cls.load(tmp_path / "model", device="cpu")
    obs = _env().reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_get_and_set_parameters(algo):
    trained = algo.make("MlpPolicy", _env())
    trained.learn(2 * trained.n_steps * 2)
    fresh = algo.make("MlpPolicy", _env(), seed=1)
    assert not params_equal(trained, fresh)
    parameters = trained.get_parameters()
    assert set(parameters) == {"policy", "policy.optimizer"}
    fresh.set_parameters(parameters, exact_match=True)
    assert params_equal(trained, fresh)
    assert _optimizer_state_equal(trained, fresh)


class _LearningRates(BaseCallback):
    def __init__(self):
        super().__init__()
        self.learning_rates: list[float] = []

    def _on_rollout_start(self) -> None:
        self.learning_rates.append(self.model.policy.optimizer.param_groups[0]["lr"])

    def _on_step(self) -> bool:
        return True


def test_reset_num_timesteps_false_continues_schedules(algo):
    schedule = lambda progress: 1e-3 * progress  # noqa: E731
    model = algo.make("MlpPolicy", _env(), learning_rate=schedule)
    batch = model.n_steps * 2
    model.learn(2 * batch)
    state = {attr: getattr(model, attr) for attr in algo.state_attrs}
    recorder = _LearningRates()
    model.learn(2 * batch, reset_num_timesteps=False, callback=recorder)
    assert model.num_timesteps == 4 * batch
    assert model._total_timesteps == 4 * batch
    # The rollout after the first update of the second call: trained at progress 1 - 3 / 4.
    assert recorder.learning_rates[1] == pytest.approx(schedule(1 - 3 / 4))
    if "_mdpo_iteration" in state:
        assert model._mdpo_iteration == state["_mdpo_iteration"] + 2  # not restarted
    # A reset restarts the schedule: the first update trains at progress 1 - 1 / 2.
    recorder = _LearningRates()
    model.learn(2 * batch, reset_num_timesteps=True, callback=recorder)
    assert recorder.learning_rates[1] == pytest.approx(schedule(1 - 1 / 2))
