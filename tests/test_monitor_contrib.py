"""Trust-region monitors on sb3-contrib's MaskablePPO and RecurrentPPO, against independent computations.

The references are written differently from the callback:

- MaskablePPO: the policy's *unmasked* logits, masked by hand in float64 numpy (``-inf``
  outside the mask, log-softmax), on a time-major copy of the rollout; the exact KL is
  ``sum_a p_old(a) (log p_old(a) - log p_new(a))`` over the allowed actions.
- RecurrentPPO: the policy stepped through the rollout one time step at a time over all
  environments, as it acts during collection (the callback re-runs each environment's whole
  sequence at once), with the LSTM state carried from the stored first-step state and reset
  at episode starts; categorical and diagonal-Gaussian log-probabilities and KL in numpy.
"""

import numpy as np
import pytest
import torch as th
from envs import DictObsEnv, EpisodicEnv
from gymnasium import spaces
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiBinary, InvalidActionEnvMultiDiscrete
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_pgx import TrustRegionMonitorCallback, callbacks

N_ENVS = 2
N_STEPS = 32
UPDATES = 3


# ----------------------------------------------------------------------------- environments
class MaskedDictEnv(EpisodicEnv):
    """Dict observation, Discrete(4) action; a random half of the actions is allowed at each step."""

    observation_space = spaces.Dict({"vec": spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32), "mode": spaces.Discrete(3)})
    action_space = spaces.Discrete(4)
    length = 15

    def _obs(self):
        self.mask = np.zeros(4, dtype=bool)
        self.mask[self.np_random.choice(4, size=2, replace=False)] = True
        return {"vec": self.np_random.uniform(-1, 1, size=3).astype(np.float32), "mode": int(self.np_random.integers(3))}

    def action_masks(self):
        return self.mask.copy()

    def reward(self, action) -> float:
        return float(self.mask[action])


class TinyImageEnv(EpisodicEnv):
    """36x36 grey images (the smallest NatureCNN takes), Discrete(2) action, episodes of 12 steps."""

    observation_space = spaces.Box(0, 255, shape=(36, 36, 1), dtype=np.uint8)
    action_space = spaces.Discrete(2)
    length = 12

    def _obs(self):
        return self.np_random.integers(0, 256, size=(36, 36, 1), dtype=np.uint8)

    def reward(self, action) -> float:
        return float(action)


MASKED_ENVS = {
    "discrete": (lambda: InvalidActionEnvDiscrete(dim=6, n_invalid_actions=3), "MlpPolicy"),
    "multidiscrete": (lambda: InvalidActionEnvMultiDiscrete(dims=[3, 4], n_invalid_actions=3), "MlpPolicy"),
    "multibinary": (lambda: InvalidActionEnvMultiBinary(dims=4, n_invalid_actions=2), "MlpPolicy"),
    "dict": (MaskedDictEnv, "MultiInputPolicy"),
}
# CartPole's random-policy episodes (~20 steps) end inside a rollout, so the re-run resets the
# LSTM mid-sequence; Pendulum's 200-step episodes mostly do not (sb3-contrib's fast path).
RECURRENT_ENVS = {
    "discrete": ("CartPole-v1", "MlpLstmPolicy"),
    "box": ("Pendulum-v1", "MlpLstmPolicy"),
    "dict": (DictObsEnv, "MultiInputLstmPolicy"),
    "image": (TinyImageEnv, "CnnLstmPolicy"),
}


def masked_model(env_name, learning_rate=3e-3):
    make_env, policy = MASKED_ENVS[env_name]
    env = make_vec_env(make_env, n_envs=N_ENVS, seed=0)
    return MaskablePPO(
        policy, env, n_steps=N_STEPS, batch_size=32, n_epochs=4, learning_rate=learning_rate, seed=0, device="cpu",
        policy_kwargs=dict(net_arch=[16]),
    )  # fmt: skip


def recurrent_model(env_name, learning_rate=1e-2):
    make_env, policy = RECURRENT_ENVS[env_name]
    env = make_vec_env(make_env, n_envs=N_ENVS, seed=0)
    policy_kwargs = dict(net_arch=[16], lstm_hidden_size=8)
    if env_name == "image":
        policy_kwargs["features_extractor_kwargs"] = dict(features_dim=16)
    return RecurrentPPO(
        policy, env, n_steps=N_STEPS, batch_size=32, n_epochs=4, learning_rate=learning_rate, seed=0, device="cpu",
        policy_kwargs=policy_kwargs,
    )  # fmt: skip


# ----------------------------------------------------------------------------- numpy references
def _logsumexp(x, axis=-1):
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def masked_log_softmax(logits, mask):
    """float64 log-probabilities with ``-inf`` outside the mask."""
    masked = np.where(mask, logits.astype(np.float64), -np.inf)
    return masked - _logsumexp(masked)[..., None]


def categorical_kl(log_p, log_q):
    """sum_a p (log p - log q) over the actions p allows."""
    allowed = np.isfinite(log_p)
    with np.errstate(invalid="ignore"):  # 0 * -inf outside the mask, replaced by 0
        return np.sum(np.where(allowed, np.exp(log_p) * (log_p - np.where(allowed, log_q, 0.0)), 0.0), axis=-1)


def figures(log_weights, epsilon=0.2):
    w = np.exp(log_weights)
    return {
        "ess": w.sum() ** 2 / np.sum(w**2) / len(w),
        "clip_fraction": np.mean(np.abs(w - 1.0) > epsilon),
        "approx_kl": np.mean((w - 1.0) - log_weights),
    }


def compare(monitor_history, reference_rows):
    assert len(monitor_history) == len(reference_rows) == UPDATES
    for row, expected in zip(monitor_history, reference_rows, strict=True):
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key


class Reference(BaseCallback):
    """Keeps a time-major copy of each rollout at its end and measures the update at the next start."""

    def __init__(self):
        super().__init__()
        self.kept = None
        self.rows = []

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        with th.no_grad():
            self.kept = self.keep(self.model.rollout_buffer)

    def _on_rollout_start(self):
        if self.kept is not None:
            self.model.policy.set_training_mode(False)
            with th.no_grad():
                self.rows.append(self.measure(self.kept))
            self.kept = None

    def _on_training_end(self):
        self._on_rollout_start()


# ----------------------------------------------------------------------------- MaskablePPO
class MaskedReference(Reference):
    def unmasked_logits(self, obs):
        """Unmasked logits ``[T * n_envs, sum(action_dims)]`` from the policy's own layers."""
        obs = {k: th.as_tensor(v) for k, v in obs.items()} if isinstance(obs, dict) else th.as_tensor(obs)
        distribution = self.model.policy.get_distribution(obs)  # no masks: raw logits
        parts = getattr(distribution, "distributions", None) or [distribution.distribution]
        return np.concatenate([part.logits.numpy() for part in parts], axis=-1)

    def keep(self, buffer):
        n = N_STEPS * N_ENVS
        obs = buffer.observations
        obs = {k: v.reshape(n, *v.shape[2:]).copy() for k, v in obs.items()} if isinstance(obs, dict) else obs.reshape(n, -1)
        masks = buffer.action_masks.reshape(n, -1).astype(bool)
        actions = buffer.actions.reshape(n, -1).astype(int)
        old_log_prob = buffer.log_probs.reshape(n).astype(np.float64)
        return obs, masks, actions, old_log_prob, self.log_probs(self.unmasked_logits(obs), masks)

    def log_probs(self, logits, masks):
        """Per-component masked log-softmax, one ``[N, n_k]`` array per action dimension."""
        space = self.model.action_space
        if isinstance(space, spaces.Discrete):
            sizes = [space.n]
        else:  # MultiBinary is a MultiDiscrete of 2s here
            sizes = list(space.nvec) if isinstance(space, spaces.MultiDiscrete) else [2] * space.n
        bounds = np.cumsum([0, *sizes])
        return [masked_log_softmax(logits[:, a:b], masks[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def measure(self, kept):
        obs, masks, actions, old_log_prob, old_parts = kept
        new_parts = self.log_probs(self.unmasked_logits(obs), masks)
        rows = np.arange(len(actions))
        new_log_prob = sum(part[rows, actions[:, k]] for k, part in enumerate(new_parts))
        row = figures(new_log_prob - old_log_prob)
        row["kl"] = np.mean(sum(categorical_kl(old, new) for old, new in zip(old_parts, new_parts, strict=True)))
        # What a mask-blind monitor would report: the unmasked softmax on the same actions.
        unmasked = self.log_probs(self.unmasked_logits(obs), np.ones_like(masks))
        row["unmasked_approx_kl"] = figures(sum(p[rows, actions[:, k]] for k, p in enumerate(unmasked)) - old_log_prob)[
            "approx_kl"
        ]
        return row


@pytest.mark.parametrize("env_name", sorted(MASKED_ENVS))
def test_maskable_ppo_figures_are_those_of_the_masked_distribution(env_name):
    model = masked_model(env_name)
    monitor = TrustRegionMonitorCallback()
    reference = MaskedReference()
    model.learn(UPDATES * N_STEPS * N_ENVS, callback=[monitor, reference])

    compare(monitor.history, [{k: v for k, v in row.items() if not k.startswith("unmasked")} for row in reference.rows])
    # The updates moved the policy, and ignoring the masks would give other figures.
    assert all(row["kl"] > 1e-4 and row["ess"] < 0.9999 for row in monitor.history)
    for row, expected in zip(monitor.history, reference.rows, strict=True):
        assert abs(expected["unmasked_approx_kl"] - row["approx_kl"]) > 0.1 * row["approx_kl"]


@pytest.mark.parametrize("env_name", sorted(MASKED_ENVS))
def test_maskable_ppo_without_learning_is_exactly_on_policy(env_name):
    model = masked_model(env_name, learning_rate=0.0)
    monitor = TrustRegionMonitorCallback()
    model.learn(2 * N_STEPS * N_ENVS, callback=monitor)
    for row in monitor.history:
        assert row["ess"] == pytest.approx(1.0, abs=1e-12)
        assert row["kl"] == pytest.approx(0.0, abs=1e-12)
        assert row["max_ratio"] == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- RecurrentPPO
def distribution_params(distribution):
    """``("categorical", log_probs)`` or ``("gaussian", mean, std)`` of an SB3 distribution, as float64 numpy."""
    torch_distribution = distribution.distribution
    if isinstance(torch_distribution, th.distributions.Categorical):
        return "categorical", torch_distribution.logits.double().numpy()
    return "gaussian", torch_distribution.mean.double().numpy(), torch_distribution.stddev.double().numpy()


def log_prob(params, actions):
    if params[0] == "categorical":
        return params[1][np.arange(len(actions)), actions[:, 0].astype(int)]
    _, mean, std = params
    return np.sum(-0.5 * ((actions - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)


def kl(old, new):
    if old[0] == "categorical":
        return categorical_kl(old[1], new[1])
    (_, m1, s1), (_, m2, s2) = old, new
    return np.sum(np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5, axis=-1)


class RecurrentReference(Reference):
    def keep(self, buffer):
        obs = buffer.observations
        obs = {k: v.copy() for k, v in obs.items()} if isinstance(obs, dict) else obs.copy()
        state = (th.as_tensor(buffer.hidden_states_pi[0]), th.as_tensor(buffer.cell_states_pi[0]))
        kept = (obs, buffer.actions.copy(), buffer.log_probs.astype(np.float64), buffer.episode_starts.copy(), state)
        return (*kept, self.step_through(kept))

    def step_through(self, kept):
        """Distribution parameters at each step ``[T]``, stepping all envs together as during collection."""
        obs, _, _, episode_starts, state, *_ = kept
        params = []
        for t in range(N_STEPS):
            obs_t = {k: th.as_tensor(v[t]) for k, v in obs.items()} if isinstance(obs, dict) else th.as_tensor(obs[t])
            distribution, state = self.model.policy.get_distribution(obs_t, state, th.as_tensor(episode_starts[t]).float())
            params.append(distribution_params(distribution))
        return params

    def measure(self, kept):
        _, actions, old_log_probs, _, _, old_params = kept
        new_params = self.step_through(kept)
        log_weights = np.concatenate(
            [log_prob(new_params[t], actions[t]) - old_log_probs[t] for t in range(N_STEPS)]
        )  # fmt: skip
        row = figures(log_weights)
        row["kl"] = np.mean(np.concatenate([kl(old_params[t], new_params[t]) for t in range(N_STEPS)]))
        return row


# "stretches": cut at episode starts and padded, one LSTM call; "per_env": one sequence per env with
# its resets inside, which the callback falls back to when padding would grow the batch too much.
LAYOUTS = {"stretches": float("inf"), "per_env": 0.0}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("env_name", sorted(RECURRENT_ENVS))
def test_recurrent_ppo_figures_equal_a_step_by_step_rerun(env_name, layout, monkeypatch):
    monkeypatch.setattr(callbacks, "MAX_PADDING", LAYOUTS[layout])
    model = recurrent_model(env_name)
    monitor = TrustRegionMonitorCallback()
    reference = RecurrentReference()
    model.learn(UPDATES * N_STEPS * N_ENVS, callback=[monitor, reference])

    compare(monitor.history, reference.rows)
    assert all(row["kl"] > 1e-5 and row["ess"] < 0.9995 for row in monitor.history)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("env_name", sorted(RECURRENT_ENVS))
def test_recurrent_ppo_without_learning_is_exactly_on_policy(env_name, layout, monkeypatch):
    """With learning_rate=0 the re-run reproduces the behaviour probabilities (to float32 rounding)."""
    monkeypatch.setattr(callbacks, "MAX_PADDING", LAYOUTS[layout])
    model = recurrent_model(env_name, learning_rate=0.0)
    monitor = TrustRegionMonitorCallback()
    model.learn(2 * N_STEPS * N_ENVS, callback=monitor)
    assert len(monitor.history) == 2
    for row in monitor.history:
        assert row["ess"] == pytest.approx(1.0, abs=1e-12)
        assert row["kl"] == 0.0  # old and new distributions come from the same re-run
        assert row["max_ratio"] == pytest.approx(1.0, abs=1e-6)


def test_recurrent_rerun_needs_the_stored_lstm_state():
    """Without the LSTM state carried through the sequence the behaviour probabilities are not reproduced."""
    model = recurrent_model("discrete", learning_rate=0.0)
    kept = {}

    class Grab(BaseCallback):
        def _on_step(self):
            return True

        def _on_rollout_end(self):
            buffer = self.model.rollout_buffer
            for name in ("observations", "actions", "log_probs"):
                kept[name] = buffer.swap_and_flatten(getattr(buffer, name))

    model.learn(N_STEPS * N_ENVS, callback=Grab())
    obs, n = th.as_tensor(kept["observations"]), N_STEPS * N_ENVS
    # Every step treated as an episode start: a fresh zero state at each row.
    zero_state = (th.zeros(1, n, 8), th.zeros(1, n, 8))
    with th.no_grad():
        forgetful, _ = model.policy.get_distribution(obs, zero_state, th.ones(n))
        log_probs = forgetful.log_prob(th.as_tensor(kept["actions"]).long().flatten()).numpy()
    assert np.max(np.abs(log_probs - kept["log_probs"].flatten())) > 1e-3


class FlattenFirst(BaseCallback):
    """Calls the buffer's ``get()`` at rollout end before the monitor does (the global RNG left as it was)."""

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        # sb3-contrib's buffers draw from numpy's global RNG, which SB3 seeds: keep it as it was.
        state = np.random.get_state()  # noqa: NPY002
        next(self.model.rollout_buffer.get(batch_size=N_STEPS))
        np.random.set_state(state)  # noqa: NPY002


@pytest.mark.parametrize("make_model", [lambda: masked_model("multidiscrete"), lambda: recurrent_model("discrete")])
def test_same_figures_when_another_callback_already_flattened_the_buffer(make_model):
    histories = []
    for before in ([], [FlattenFirst()]):
        monitor = TrustRegionMonitorCallback()
        make_model().learn(UPDATES * N_STEPS * N_ENVS, callback=[*before, monitor])
        histories.append(monitor.history)
    assert histories[0] == histories[1]
    assert histories[0][0]["ess"] < 0.9999


# ----------------------------------------------------------------------------- refusals
def test_algorithms_the_monitor_cannot_measure_get_a_type_error_saying_what_is_needed():
    model = DQN("MlpPolicy", "CartPole-v1", buffer_size=100, learning_starts=10, device="cpu")
    with pytest.raises(TypeError, match="on-policy algorithm.*MaskableActorCriticPolicy.*RecurrentActorCriticPolicy.*got DQN"):
        model.learn(10, callback=TrustRegionMonitorCallback())

    # A maskable policy whose masks were not kept: the behaviour distribution is unknown.
    model = masked_model("discrete")
    model.rollout_buffer = RolloutBuffer(N_STEPS, model.observation_space, model.action_space, n_envs=N_ENVS)
    with pytest.raises(TypeError, match="got MaskablePPO with MaskableActorCriticPolicy and RolloutBuffer"):
        model.learn(N_STEPS * N_ENVS, callback=TrustRegionMonitorCallback())

    # A recurrent buffer under a feed-forward policy has states the policy cannot use.
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=N_STEPS, batch_size=N_STEPS, device="cpu")
    model.rollout_buffer = recurrent_model("discrete").rollout_buffer
    with pytest.raises(TypeError, match="got PPO with ActorCriticPolicy and RecurrentRolloutBuffer"):
        model.learn(N_STEPS, callback=TrustRegionMonitorCallback())
