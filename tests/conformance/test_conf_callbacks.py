"""SB3's callbacks, our monitors, TensorBoard and the progress bar."""

import pytest
from stable_baselines3.common.callbacks import (
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    ProgressBarCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env

from sb3_pgx import ClipFractionCallback, ESSCallback, TrustRegionMonitorCallback


def _env(n_envs=2):
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)


def test_eval_callback_stops_on_reward_threshold(algo, tmp_path):
    model = algo.make("MlpPolicy", _env())
    batch = model.n_steps * 2
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1.0, verbose=0)  # any reward beats it
    evaluation = EvalCallback(
        _env(1), callback_on_new_best=stop, eval_freq=model.n_steps, n_eval_episodes=1, best_model_save_path=str(tmp_path)
    )
    model.learn(10 * batch, callback=evaluation)
    assert model.num_timesteps < 10 * batch  # stopped at the first evaluation
    assert evaluation.n_calls // model.n_steps == 1 and evaluation.best_mean_reward > -1.0
    algo.cls.load(tmp_path / "best_model.zip", device="cpu")


def test_checkpoint_callback(algo, tmp_path):
    model = algo.make("MlpPolicy", _env())
    batch = model.n_steps * 2
    model.learn(2 * batch, callback=CheckpointCallback(save_freq=model.n_steps, save_path=str(tmp_path), name_prefix="ckpt"))
    checkpoints = sorted(tmp_path.glob("ckpt_*_steps.zip"))
    assert len(checkpoints) == 2
    algo.cls.load(checkpoints[-1], env=_env(), device="cpu").learn(batch, reset_num_timesteps=False)


def test_callback_list_with_monitors(algo, tmp_path):
    model = algo.make("MlpPolicy", _env())
    batch = model.n_steps * 2
    monitors = [
        TrustRegionMonitorCallback(csv_path=str(tmp_path / "monitor.csv")),
        ESSCallback(min_ess=1e-6),
        ClipFractionCallback(clip_epsilon=0.2, max_clip_fraction=1.0),
    ]
    evaluation = EvalCallback(_env(1), eval_freq=model.n_steps, n_eval_episodes=1)
    model.learn(3 * batch, callback=CallbackList([*monitors, evaluation]))
    assert model.num_timesteps == 3 * batch
    assert (tmp_path / "monitor.csv").read_text().count("\n") >= 3  # header + one row per update


def test_tensorboard_output(algo, tmp_path):
    model = algo.make("MlpPolicy", _env(), tensorboard_log=str(tmp_path))
    model.learn(2 * model.n_steps * 2)
    run_dirs = list(tmp_path.iterdir())
    assert [d.name for d in run_dirs] == [f"{algo.name}_1"]
    assert list(run_dirs[0].glob("events.out.tfevents.*"))


def test_progress_bar(algo, monkeypatch):
    """progress_bar=True adds SB3's progress bar, which advances at every environment step by n_envs."""
    pytest.importorskip("tqdm")
    pytest.importorskip("rich")
    advanced = []
    original = ProgressBarCallback._on_step

    def counting(self):
        advanced.append(self.model.n_envs)
        return original(self)

    monkeypatch.setattr(ProgressBarCallback, "_on_step", counting)
    model = algo.make("MlpPolicy", _env())
    model.learn(2 * model.n_steps * 2, progress_bar=True)
    assert model.num_timesteps == 2 * model.n_steps * 2
    assert sum(advanced) == model.num_timesteps  # the bar saw every step
    model.learn(model.n_steps * 2)
    assert len(advanced) == 2 * model.n_steps  # no bar without progress_bar=True
