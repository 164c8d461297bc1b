"""Trust-region monitoring callbacks on stock SB3, sb3-contrib and sb3_pgx algorithms.

The reference figures are computed here independently: weights from the policy's own
``evaluate_actions`` on a time-major copy of the rollout, and the naive formulas
``(sum w)^2 / sum w^2`` and ``mean(|w - 1| > eps)`` in float64 numpy.
"""

import csv
import inspect
import math

import numpy as np
import pytest
import torch as th
from envs import DictObsEnv
from gymnasium import spaces
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvMultiDiscrete
from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger

from sb3_pgx import (
    AdaptiveKLPPO,
    ClipFractionCallback,
    ESSCallback,
    TrustRegionMonitorCallback,
    TrustRegionWarning,
    VanillaPG,
    VTraceA2C,
    registry,
)
from sb3_pgx.plot_monitor import load_history, main, plot_monitor

N_ENVS = 2
N_STEPS = 32
BATCH = N_STEPS * N_ENVS
FIGURES = ("ess", "clip_fraction", "kl", "approx_kl", "kl_k1", "max_ratio")


ENVS = {
    "discrete": "CartPole-v1",
    "box": "Pendulum-v1",
    "multidiscrete": lambda: IdentityEnvMultiDiscrete(dim=2, ep_length=20),
    "dict": DictObsEnv,
}


#: Settings of the SB3 algorithms; each of ours takes its baseline's (those it accepts) and its own below.
SETTINGS = {
    "ppo": dict(n_steps=N_STEPS, batch_size=32, n_epochs=3, learning_rate=3e-3),
    "a2c": dict(n_steps=N_STEPS, learning_rate=3e-3),
    "trpo": dict(n_steps=N_STEPS, batch_size=BATCH, n_critic_updates=1, cg_max_steps=5, target_kl=0.05),
}
BASELINE_OF = {algorithm.cls: algorithm.baseline for algorithm in registry.ALGORITHMS}
OWN_SETTINGS = {
    VanillaPG: dict(batch_size=BATCH, n_critic_updates=1, learning_rate=3e-2),
    VTraceA2C: dict(n_epochs=2),
}
OURS = [algorithm.cls for algorithm in registry.ALGORITHMS]


def make_model(algo, env_name="discrete", **overrides):
    """A tiny model of ``algo`` on ``N_ENVS`` environments, steps big enough to move the policy."""
    env = make_vec_env(ENVS[env_name], n_envs=N_ENVS, seed=0)
    policy = "MultiInputPolicy" if env_name == "dict" else "MlpPolicy"
    name = BASELINE_OF.get(algo, algo.__name__.lower())
    accepted = inspect.signature(algo.__init__).parameters
    kwargs = {key: value for key, value in SETTINGS[name].items() if key in accepted}
    kwargs.update(OWN_SETTINGS.get(algo, {}))
    kwargs.update(overrides)
    return algo(policy, env, seed=0, device="cpu", policy_kwargs=dict(net_arch=[16]), **kwargs)


class Recorder(KVWriter):
    """Logger output that keeps a copy of every dump."""

    def __init__(self):
        self.dumps = []

    def write(self, key_values, key_excluded, step=0):
        self.dumps.append(dict(key_values))

    def close(self):
        pass


def record_logs(model, *extra_formats) -> Recorder:
    recorder = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[recorder, *extra_formats]))
    return recorder


def count_train_calls(model) -> list:
    """Wrap ``model.train`` to count the updates independently of the callback."""
    calls, train = [], model.train

    def counted_train():
        calls.append(model.num_timesteps)
        train()

    model.train = counted_train
    return calls


class IndependentFigures(BaseCallback):
    """Reference ESS and clip fraction of each update, from a time-major copy of the rollout."""

    def __init__(self, epsilon):
        super().__init__()
        self.epsilon = epsilon
        self.batch = None
        self.ess, self.clip_fraction = [], []

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        buffer = self.model.rollout_buffer
        n = buffer.buffer_size * buffer.n_envs
        obs = buffer.observations
        obs = {k: v.reshape(n, *v.shape[2:]).copy() for k, v in obs.items()} if isinstance(obs, dict) else obs.reshape(n, -1)
        self.batch = (obs, buffer.actions.reshape(n, -1).copy(), buffer.log_probs.reshape(n).astype(np.float64))

    def _measure(self):
        if self.batch is None:
            return
        obs, actions, old_log_prob = self.batch
        self.batch = None
        policy = self.model.policy
        policy.set_training_mode(False)
        obs_t = {k: th.as_tensor(v) for k, v in obs.items()} if isinstance(obs, dict) else th.as_tensor(obs)
        actions_t = th.as_tensor(actions)
        if isinstance(self.model.action_space, spaces.Discrete):
            actions_t = actions_t.long().flatten()
        with th.no_grad():
            _, log_prob, _ = policy.evaluate_actions(obs_t, actions_t)
        w = np.exp(log_prob.numpy().astype(np.float64) - old_log_prob)
        self.ess.append(w.sum() ** 2 / np.sum(w**2) / len(w))
        self.clip_fraction.append(np.mean(np.abs(w - 1.0) > self.epsilon))

    def _on_rollout_start(self):
        self._measure()

    def _on_training_end(self):
        self._measure()


# ----------------------------------------------------------------------------- runs and logs
@pytest.mark.parametrize("algo", [PPO, A2C, TRPO, VanillaPG])
def test_runs_and_logs_on_every_on_policy_algorithm(algo, tmp_path):
    model = make_model(algo)
    recorder = record_logs(model, CSVOutputFormat(str(tmp_path / "progress.csv")))
    calls = count_train_calls(model)
    monitor = TrustRegionMonitorCallback()
    model.learn(3 * BATCH, callback=monitor, log_interval=1)

    assert len(calls) == 3
    assert len(monitor.history) == len(calls)
    # Update k is recorded at rollout k + 1's start, so it is in dump k + 1 (not in the first).
    assert not any(key.startswith("trust_region/") for key in recorder.dumps[0])
    for k in (1, 2):
        for figure in FIGURES:
            assert recorder.dumps[k][f"trust_region/{figure}"] == monitor.history[k - 1][figure]
    # The last update is measured at training end: recorded, not dumped (as SB3's own train/).
    assert model.logger.name_to_value["trust_region/ess"] == monitor.history[2]["ess"]
    with open(tmp_path / "progress.csv") as file:
        assert "trust_region/ess" in next(csv.reader(file))


@pytest.mark.parametrize("env_name", ["discrete", "box", "multidiscrete", "dict"])
def test_ppo_figures_equal_independent_computation(env_name):
    model = make_model(PPO, env_name)
    monitor = TrustRegionMonitorCallback()
    reference = IndependentFigures(epsilon=0.2)
    model.learn(3 * BATCH, callback=[monitor, reference])

    assert len(reference.ess) == len(monitor.history) == 3
    ess = [row["ess"] for row in monitor.history]
    np.testing.assert_allclose(ess, reference.ess, rtol=1e-6, atol=0)
    np.testing.assert_allclose([row["clip_fraction"] for row in monitor.history], reference.clip_fraction)
    # The updates moved the policy, so comparing against the wrong batch or policy would fail.
    assert min(ess) < 0.9999
    assert all(row["kl"] > 0 for row in monitor.history)


class RecordingLogger(Logger):
    """A logger that keeps every ``record`` call, and whether it came from inside ``train()``."""

    def __init__(self):
        super().__init__(folder=None, output_formats=[])
        self.in_train = False
        self.calls: list[tuple[str, float, bool]] = []

    def record(self, key, value, exclude=None):
        self.calls.append((key, value, self.in_train))
        super().record(key, value, exclude)


def default_epsilon(algo) -> float:
    """The half-width the figures use with ``diagnostics_epsilon=0.1``: a default PPO clip range wins over it."""
    clip_range = inspect.signature(algo.__init__).parameters.get("clip_range")
    return 0.1 if clip_range is None or clip_range.default is None else clip_range.default


OWN_LOG_CASES = [
    *[pytest.param(VanillaPG, env_name, {}, 0.1, id=f"VanillaPG-{env_name}") for env_name in ENVS],
    *[pytest.param(algo, "discrete", {}, default_epsilon(algo), id=algo.__name__) for algo in OURS if algo is not VanillaPG],
    # With a PPO clip range, both use it rather than diagnostics_epsilon.
    pytest.param(AdaptiveKLPPO, "box", dict(clip_range=0.15), 0.15, id="AdaptiveKLPPO-clip_range"),
]


@pytest.mark.parametrize(("algo", "env_name", "overrides", "epsilon"), OWN_LOG_CASES)
def test_equals_the_algorithms_own_log(algo, env_name, overrides, epsilon):
    """Each sb3_pgx algorithm logs its post-update figures under trust_region/ itself; the callback
    writes the same keys with the same figures."""
    model = make_model(algo, env_name, diagnostics_epsilon=0.1, **overrides)
    logger = RecordingLogger()
    model.set_logger(logger)
    train = model.train

    def flagged_train():
        logger.in_train = True
        train()
        logger.in_train = False

    model.train = flagged_train
    monitor = TrustRegionMonitorCallback()  # default epsilon and prefix: the algorithm's
    model.learn(3 * BATCH, callback=monitor, log_interval=1)

    assert len(monitor.history) == 3
    assert all(row["clip_epsilon"] == epsilon for row in monitor.history)
    own = {key for key, _, in_train in logger.calls if in_train and key.startswith("trust_region/")}
    # Every algorithm logs these (an exact KL needs the behaviour distribution, which VTraceA2C does not snapshot).
    assert {f"trust_region/{figure}" for figure in FIGURES if figure != "kl"} <= own
    for key in own:
        figure = key.removeprefix("trust_region/")
        ours = [value for name, value, in_train in logger.calls if name == key and in_train]
        callbacks = [value for name, value, in_train in logger.calls if name == key and not in_train]
        # Equal up to float32 rounding: the two evaluate the policy on the batch in other orders.
        assert ours == pytest.approx(callbacks, rel=1e-6, abs=1e-7), key
        assert callbacks == [row[figure] for row in monitor.history], key
    assert monitor.history[0]["ess"] < 0.9999


# ----------------------------------------------------------------------------- history
def test_history_indices_csv_and_second_learn_call(tmp_path):
    model = make_model(A2C)
    path = tmp_path / "sub" / "run.csv"
    monitor = TrustRegionMonitorCallback(csv_path=path)
    model.learn(2 * BATCH, callback=monitor)
    model.learn(2 * BATCH, callback=monitor, reset_num_timesteps=False)

    assert [row["update"] for row in monitor.history] == [1, 2, 3, 4]
    assert [row["timesteps"] for row in monitor.history] == [BATCH, 2 * BATCH, 3 * BATCH, 4 * BATCH]
    assert all(row["clip_epsilon"] == 0.2 for row in monitor.history)  # A2C has no clip_range
    written = load_history(path)
    np.testing.assert_array_equal(written["update"], [1, 2, 3, 4])
    np.testing.assert_allclose(written["ess"], [row["ess"] for row in monitor.history])

    monitor.save_history(tmp_path / "saved.csv")
    saved = load_history(tmp_path / "saved.csv")
    for key, column in monitor.history_arrays().items():
        np.testing.assert_allclose(saved[key], column)


def test_clip_epsilon_follows_ppo_schedule_unless_given():
    total = 4 * BATCH
    model = make_model(PPO, clip_range=lambda progress: 0.1 + 0.2 * progress)
    monitor = TrustRegionMonitorCallback()
    fixed = ClipFractionCallback(clip_epsilon=0.3, prefix="fixed")
    model.learn(total, callback=[monitor, fixed])
    # Progress after rollout k is 1 - k * BATCH / total, the value PPO's train() used.
    expected = [0.1 + 0.2 * (1 - row["timesteps"] / total) for row in monitor.history]
    np.testing.assert_allclose([row["clip_epsilon"] for row in monitor.history], expected)
    assert all(row["clip_epsilon"] == 0.3 for row in fixed.history)


def test_single_figure_callbacks_log_only_their_figure():
    model = make_model(PPO)
    recorder = record_logs(model)
    model.learn(2 * BATCH, log_interval=1, callback=CallbackList([ESSCallback(prefix="a"), ClipFractionCallback(prefix="b")]))
    keys = {key for dump in recorder.dumps for key in dump} | set(model.logger.name_to_value)
    assert {key for key in keys if key.startswith(("a/", "b/"))} == {"a/ess", "b/clip_fraction"}


# ----------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize("callback", [TrustRegionMonitorCallback(min_ess=1.0, action="stop"), ESSCallback(1.0, "stop")])
def test_stop_after_first_update_beside_eval_and_checkpoint(callback, tmp_path):
    """ESS/N = 1 needs all weights equal: any real update violates it."""
    model = make_model(PPO)
    calls = count_train_calls(model)
    evaluation = EvalCallback(make_vec_env("CartPole-v1", n_envs=1), eval_freq=10_000, n_eval_episodes=1)
    checkpoint = CheckpointCallback(save_freq=10_000, save_path=str(tmp_path))
    model.learn(10 * BATCH, callback=CallbackList([evaluation, callback, checkpoint]))

    assert len(calls) == 1
    assert len(callback.history) == 1
    assert model.num_timesteps == BATCH + N_ENVS  # stopped at the first step after the update
    assert "update 1" in callback.stop_reason and "ESS/N" in callback.stop_reason


def test_stop_reason_is_that_of_the_last_learn():
    model = make_model(PPO)
    monitor = TrustRegionMonitorCallback(min_ess=1.0, action="stop")
    model.learn(3 * BATCH, callback=monitor)
    assert "ESS/N" in monitor.stop_reason
    monitor.thresholds.clear()  # the same callback, nothing left to stop on
    model.learn(2 * BATCH, callback=monitor, reset_num_timesteps=False)
    assert monitor.stop_reason is None and len(monitor.history) == 3


def test_warn_names_update_and_figure_and_goes_on():
    model = make_model(PPO)
    monitor = TrustRegionMonitorCallback(min_ess=1.0, max_kl=1e-12, action="warn")
    with pytest.warns(TrustRegionWarning) as caught:
        model.learn(3 * BATCH, callback=monitor, log_interval=1)
    messages = [str(w.message) for w in caught if issubclass(w.category, TrustRegionWarning)]
    assert len(monitor.history) == 3
    for update in (1, 2, 3):
        assert any(f"update {update} " in m and "ESS/N" in m and "min_ess = 1" in m for m in messages)
        assert any(f"update {update} " in m and "KL = " in m and "max_kl" in m for m in messages)
    assert monitor.stop_reason is None


def test_per_threshold_actions():
    model = make_model(PPO)
    monitor = TrustRegionMonitorCallback(min_ess=1.0, max_kl=1e-12, action={"max_kl": "stop"}, exact_kl=False)
    with pytest.warns(TrustRegionWarning, match=r"update 1 .*ESS/N"):
        model.learn(5 * BATCH, callback=monitor)
    assert len(monitor.history) == 1
    assert "KL (k3 estimate)" in monitor.stop_reason  # without exact KL the k3 estimate is tested
    assert "kl" not in monitor.history[0]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(min_ess=0.0), "min_ess"),
        (dict(min_ess=-0.1), "min_ess"),
        (dict(min_ess=1.5), "min_ess"),
        (dict(min_ess=math.nan), "min_ess"),
        (dict(clip_epsilon=-0.1), "clip_epsilon"),
        (dict(clip_epsilon=0.0), "clip_epsilon"),
        (dict(max_kl=-1.0), "max_kl"),
        (dict(max_clip_fraction=1.5), "max_clip_fraction"),
        (dict(action="explode"), "action"),
        (dict(action={"min_ess": "explode"}), "action"),
        (dict(action={"max_ess": "warn"}), "max_ess"),
        (dict(prefix=""), "prefix"),
    ],
)
def test_bad_input_raises_value_error(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TrustRegionMonitorCallback(**kwargs)


def test_bad_input_single_figure_callbacks():
    with pytest.raises(ValueError, match="min_ess"):
        ESSCallback(min_ess=2.0)
    with pytest.raises(ValueError, match="clip_epsilon"):
        ClipFractionCallback(clip_epsilon=-0.2)
    with pytest.raises(ValueError, match="action"):
        ESSCallback(min_ess=0.5, action="ignore")


# ----------------------------------------------------------------------------- plot
def test_plot_function_and_command(tmp_path):
    history = [
        {
            "update": k,
            "timesteps": 64 * k,
            "clip_epsilon": 0.2,
            "ess": 1 - 0.1 * k,
            "kl": 0.01 * k,
            "approx_kl": 0.011 * k,
            "clip_fraction": 0.05 * k,
        }
        for k in (1, 2, 3)
    ]
    figure = plot_monitor(history, tmp_path / "f.png", min_ess=0.5, max_kl=0.05)
    assert [axis.get_ylabel() for axis in figure.axes] == ["ESS / N", "KL(old || new)", "clip fraction (eps = 0.2)"]
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), [0.9, 0.8, 0.7])

    path = tmp_path / "run.csv"
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    main([str(path), "-o", str(tmp_path / "monitor.png"), "--x", "update"])
    assert (tmp_path / "monitor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="x="):
        plot_monitor(history, x="epoch")


def test_plot_says_which_panels_have_no_data():
    history = [{"update": k, "timesteps": 64 * k, "ess": 1 - 0.1 * k} for k in (1, 2, 3)]  # what ESSCallback records
    figure = plot_monitor(history)
    texts = [[text.get_text() for text in axis.texts] for axis in figure.axes]
    assert texts == [[], ["no KL in this history"], ["no clip fraction in this history"]]
    assert len(figure.axes[0].lines) == 1
    # A column of NaN only (a figure missing from every row) is no data either.
    figure = plot_monitor([{**row, "kl": math.nan} for row in history])
    texts = [axis.texts[0].get_text() for axis in figure.axes[1:]]
    assert texts == ["no KL in this history", "no clip fraction in this history"]


def test_plot_empty_or_missing_csv_gives_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    with pytest.raises(FileNotFoundError, match="no monitor CSV at .*missing.csv.*csv_path"):
        load_history(missing)
    empty, header_only = tmp_path / "empty.csv", tmp_path / "header.csv"
    empty.write_text("")
    header_only.write_text("update,timesteps,ess\n")
    for path in (empty, header_only):
        with pytest.raises(ValueError, match="holds no update"):
            plot_monitor(path)
    with pytest.raises(ValueError, match="no update"):
        plot_monitor([])
    # The command prints the message, not a traceback, and exits with status 2.
    with pytest.raises(SystemExit) as exit_info:
        main([str(missing), "-o", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    assert "no monitor CSV at" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
