"""V-trace: the pure function against the paper's double sum, and VTraceA2C's use of it."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from runs import a2c_and_vtrace_weights, stop_when_solved
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_pgx
from sb3_pgx import VTraceA2C, vtrace
from sb3_pgx.a2c_vtrace import a2c_vtrace as a2c_vtrace_module


# --------------------------------------------------------------------------- references
def naive_vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, c_bar, pg_rho_bar, lam=1.0):
    """The paper's definition, written as an explicit double sum with explicit products.

    v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) delta_t,
    delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t)), V(x_T) = bootstrap;
    A_s = min(pg_rho_bar, w_s) (r_s + gamma_s (lam v_{s+1} + (1 - lam) V(x_{s+1})) - V(x_s)),
    v_T = bootstrap (rlax's vtrace_td_error_and_advantage).
    Plain Python floats, loops over envs, s, t and i.
    """
    T, N = len(rewards), len(rewards[0])
    vs = [[0.0] * N for _ in range(T)]
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):

        def value(t, n=n):
            return bootstrap[n] if t == T else values[t][n]

        for s in range(T):
            total = value(s)
            for t in range(s, T):
                coefficient = 1.0
                for i in range(s, t):
                    coefficient *= discounts[i][n] * lam * min(c_bar, math.exp(log_rhos[i][n]))
                rho = min(rho_bar, math.exp(log_rhos[t][n]))
                delta = rho * (rewards[t][n] + discounts[t][n] * value(t + 1) - value(t))
                total += coefficient * delta
            vs[s][n] = total
        for s in range(T):
            v_next = bootstrap[n] if s == T - 1 else vs[s + 1][n]
            q_next = lam * v_next + (1.0 - lam) * value(s + 1)
            adv[s][n] = min(pg_rho_bar, math.exp(log_rhos[s][n])) * (rewards[s][n] + discounts[s][n] * q_next - values[s][n])
    return np.array(vs), np.array(adv)


def naive_gae(rewards, values, bootstrap, dones, gamma, lam):
    """GAE(lambda) as SB3's RolloutBuffer computes it: one backward loop per env over float64 scalars.

    ``dones[t][n]``: the episode ended after step t (SB3's ``1 - next_non_terminal``).
    """
    T, N = len(rewards), len(rewards[0])
    advantages = [[0.0] * N for _ in range(T)]
    for n in range(N):
        last = 0.0
        for t in reversed(range(T)):
            next_value = bootstrap[n] if t == T - 1 else values[t + 1][n]
            non_terminal = 1.0 - float(dones[t][n])
            delta = rewards[t][n] + gamma * next_value * non_terminal - values[t][n]
            last = delta + gamma * lam * non_terminal * last
            advantages[t][n] = last
    return np.array(advantages)


def discounted_returns(discounts, rewards, bootstrap):
    """G_s = sum_t (prod_{i=s}^{t-1} gamma_i) r_t + (prod_{i=s}^{T-1} gamma_i) bootstrap, as a matrix product."""
    T = rewards.shape[0]
    returns = np.zeros_like(rewards)
    for n in range(rewards.shape[1]):
        # M[s, t] = prod_{i=s}^{t-1} gamma_i for t >= s (cumulative products of the discounts).
        weights = np.zeros((T, T + 1))
        for s in range(T):
            weights[s, s:] = np.concatenate([[1.0], np.cumprod(discounts[s:, n])])
        returns[:, n] = weights @ np.concatenate([rewards[:, n], [bootstrap[n]]])
    return returns


def random_inputs(seed, T=9, N=4, log_rho_scale=0.5, gamma=0.95):
    rng = np.random.default_rng(seed)
    dones = rng.random((T, N)) < 0.25  # episode ends inside the window
    dones[2, 0] = True
    return dict(
        log_rhos=rng.normal(0.0, log_rho_scale, (T, N)),
        discounts=gamma * (1.0 - dones),
        rewards=rng.normal(size=(T, N)),
        values=rng.normal(size=(T, N)),
        bootstrap_value=rng.normal(size=N),
    )


def run_vtrace(inputs, **clips):
    out = vtrace(**{k: th.as_tensor(v, dtype=th.float64) for k, v in inputs.items()}, **clips)
    return out.vs.numpy(), out.pg_advantages.numpy()


def run_naive(inputs, rho_bar=1.0, c_bar=1.0, pg_rho_bar=1.0, lambda_=1.0):
    return naive_vtrace(
        inputs["log_rhos"].tolist(),
        inputs["discounts"].tolist(),
        inputs["rewards"].tolist(),
        inputs["values"].tolist(),
        inputs["bootstrap_value"].tolist(),
        rho_bar,
        c_bar,
        pg_rho_bar,
        lambda_,
    )


# --------------------------------------------------------------------------- the pure function
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "clips",
    [
        {},
        dict(rho_bar=2.0, c_bar=0.7, pg_rho_bar=1.5),
        dict(lambda_=0.8),
        dict(rho_bar=2.0, c_bar=0.7, pg_rho_bar=1.5, lambda_=0.5),  # off-policy, truncated, lambda < 1
    ],
)
def test_vtrace_matches_double_sum(seed, clips):
    inputs = random_inputs(seed)
    vs, adv = run_vtrace(inputs, **clips)
    ref_vs, ref_adv = run_naive(inputs, **clips)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-10, atol=1e-10)


def test_vtrace_on_policy_large_clip_is_discounted_bootstrapped_return():
    inputs = random_inputs(0, T=12, N=5)
    inputs["log_rhos"] = np.zeros_like(inputs["log_rhos"])
    vs, adv = run_vtrace(inputs, rho_bar=1e6, c_bar=1e6, pg_rho_bar=1e6)
    returns = discounted_returns(inputs["discounts"], inputs["rewards"], inputs["bootstrap_value"])
    np.testing.assert_allclose(vs, returns, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(adv, returns - inputs["values"], rtol=1e-10, atol=1e-10)
    # The episode end cuts the return: the step before it only sees its own reward.
    assert vs[2, 0] == pytest.approx(inputs["rewards"][2, 0])


@pytest.mark.parametrize("lam", [0.5, 0.9, 0.95])
@pytest.mark.parametrize("seed", range(3))
def test_vtrace_on_policy_is_gae(seed, lam):
    """All weights 1: the advantages are SB3's GAE(lambda) and the targets GAE + V (SB3's returns)."""
    gamma = 0.95
    rng = np.random.default_rng(seed)
    T, N = 11, 4
    dones = rng.random((T, N)) < 0.25
    dones[3, 0] = True
    rewards, values, bootstrap = rng.normal(size=(T, N)), rng.normal(size=(T, N)), rng.normal(size=N)
    expected = naive_gae(rewards.tolist(), values.tolist(), bootstrap.tolist(), dones.tolist(), gamma, lam)
    inputs = dict(
        log_rhos=np.zeros((T, N)), discounts=gamma * (1.0 - dones), rewards=rewards, values=values, bootstrap_value=bootstrap
    )
    vs, adv = run_vtrace(inputs, lambda_=lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(vs, expected + values, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_vtrace_truncation_far_from_one(seed):
    inputs = random_inputs(seed, log_rho_scale=3.0)  # weights from e^-9 to e^9
    clips = dict(rho_bar=1.0, c_bar=0.5, pg_rho_bar=2.0)
    vs, adv = run_vtrace(inputs, **clips)
    ref_vs, ref_adv = run_naive(inputs, **clips)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-9, atol=1e-9)
    # Truncation is active: without it the targets differ.
    untruncated_vs, _ = run_vtrace(inputs, rho_bar=math.inf, c_bar=math.inf, pg_rho_bar=math.inf)
    assert np.abs(untruncated_vs - vs).max() > 1e-3
    # Weights far outside the float range are truncated before they can overflow.
    inputs["log_rhos"][0] = 1000.0
    inputs["log_rhos"][1] = -1000.0
    vs, adv = run_vtrace(inputs, **clips)
    assert np.isfinite(vs).all() and np.isfinite(adv).all()


def test_vtrace_no_gradient_and_shapes():
    inputs = {k: th.as_tensor(v, dtype=th.float32) for k, v in random_inputs(1).items()}
    inputs["values"].requires_grad_(True)
    out = vtrace(**inputs)
    assert out.vs.shape == out.pg_advantages.shape == inputs["rewards"].shape
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad
    with pytest.raises(ValueError, match="bootstrap_value"):
        vtrace(**{**inputs, "bootstrap_value": th.zeros(3)})
    with pytest.raises(ValueError, match="rewards"):
        vtrace(**{**inputs, "rewards": th.zeros(2, 2)})
    with pytest.raises(ValueError):
        vtrace(**inputs, rho_bar=0.0)
    assert sb3_pgx.vtrace is vtrace


# --------------------------------------------------------------------------- the algorithm
class CountEnv(gym.Env):
    """Deterministic: observation [t, env_id], reward t + 1, the episode ends after `length` steps."""

    def __init__(self, length, env_id):
        self.length, self.env_id, self.t = length, env_id, 0
        self.observation_space = gym.spaces.Box(-100.0, 100.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return np.array([self.t, self.env_id], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(self.t + 1)
        self.t += 1
        terminated = self.t == self.length
        return self._obs(), reward, terminated, False, {}


def count_vec_env(lengths=(3, 4, 5)):
    return DummyVecEnv([lambda length=length, i=i: CountEnv(length, i) for i, length in enumerate(lengths)])


def test_train_uses_time_ordered_buffer(monkeypatch):
    lengths, n_steps, gamma = (3, 4, 5), 7, 0.9
    calls = []

    def spy(**kwargs):
        out = vtrace(**kwargs)
        calls.append({**kwargs, "out": out})
        return out

    monkeypatch.setattr(a2c_vtrace_module, "vtrace", spy)
    # Two epochs: the first step of each rollout takes the buffer's targets (all weights 1, no V-trace
    # call); the second calls V-trace, on-policy still with a learning rate of 1e-12.
    model = VTraceA2C(
        "MlpPolicy", count_vec_env(lengths), n_steps=n_steps, gamma=gamma, n_epochs=2, learning_rate=1e-12, seed=0
    )
    model.learn(2 * n_steps * len(lengths))
    assert len(calls) == 2
    for rollout, call in enumerate(calls):
        k = rollout * n_steps + np.arange(n_steps)[:, None]  # global step index, [T, 1]
        t_in_episode = k % np.array(lengths)  # [T, N]
        np.testing.assert_array_equal(call["rewards"].numpy(), t_in_episode + 1)
        done = t_in_episode == np.array(lengths) - 1
        np.testing.assert_allclose(call["discounts"].numpy(), gamma * (1 - done), rtol=1e-6)
        # Values and bootstrap value are those of the current value function on the time-ordered observations.
        obs = np.stack([t_in_episode, np.broadcast_to(np.arange(len(lengths)), t_in_episode.shape)], axis=-1)
        with th.no_grad():
            expected_values = model.policy.predict_values(th.as_tensor(obs.reshape(-1, 2), dtype=th.float32))
            last = np.stack([((rollout + 1) * n_steps) % np.array(lengths), np.arange(len(lengths))], axis=-1)
            expected_bootstrap = model.policy.predict_values(th.as_tensor(last, dtype=th.float32)).flatten()
        np.testing.assert_allclose(call["values"].numpy(), expected_values.view(n_steps, -1).numpy(), atol=1e-5)
        np.testing.assert_allclose(call["bootstrap_value"].numpy(), expected_bootstrap.numpy(), atol=1e-5)
        # On-policy: the weights are 1 and the targets are the reference's.
        np.testing.assert_allclose(call["log_rhos"].numpy(), 0.0, atol=1e-5)
        inputs = {key: call[key].double().numpy() for key in ("log_rhos", "discounts", "rewards", "values", "bootstrap_value")}
        ref_vs, ref_adv = run_naive(inputs)
        np.testing.assert_allclose(call["out"].vs.numpy(), ref_vs, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(call["out"].pg_advantages.numpy(), ref_adv, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("gae_lambda", [1.0, 0.9])
def test_single_epoch_is_a2c(gae_lambda):
    """n_epochs=1, no replay: the weights are 1 and the update is A2C's exactly, at any gae_lambda."""
    a2c, vt = a2c_and_vtrace_weights(3, 3 * 6 * 4, n_steps=6, gamma=0.97, gae_lambda=gae_lambda, ent_coef=0.01, seed=3)
    for key in a2c:
        th.testing.assert_close(vt[key], a2c[key], rtol=1e-4, atol=1e-5)


def test_reuse_changes_weights_and_correction_switch(monkeypatch):
    seen = []

    def spy(**kwargs):
        seen.append(kwargs["log_rhos"].clone())
        return vtrace(**kwargs)

    monkeypatch.setattr(a2c_vtrace_module, "vtrace", spy)
    env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
    model = VTraceA2C("MlpPolicy", env, n_steps=8, n_epochs=3, n_env_minibatches=2, learning_rate=3e-3, seed=0)
    model.learn(4 * 8 * 2)
    # rollouts x (epochs x minibatches - 1): each rollout's first step takes the buffer's targets
    assert len(seen) == 2 * (3 * 2 - 1)
    assert all(s.shape == (8, 2) for s in seen)
    assert max(s.abs().max().item() for s in seen) > 1e-4  # reused data is off-policy
    seen.clear()
    model = VTraceA2C("MlpPolicy", env, n_steps=8, n_epochs=3, correction="none", learning_rate=3e-3, seed=0)
    model.learn(4 * 8 * 2)
    assert all(bool((s == 0).all()) for s in seen)  # plain reuse: all weights 1


def test_replay_bounded_and_documented_size():
    env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
    model = VTraceA2C("MlpPolicy", env, n_steps=8, replay_rollouts=2, seed=0)
    model.learn(4 * 8 * 5)
    assert len(model.replay_store) == 2
    newest = model.replay_store[-1]
    np.testing.assert_array_equal(newest.behaviour_log_prob.numpy(), model.rollout_buffer.log_probs)
    obs_dim, action_dim = 4, 1
    per_rollout = 4 * (obs_dim + action_dim + 3) * 8 * 4 + 4 * obs_dim * 4
    assert model.replay_nbytes == 2 * per_rollout
    # Every replayed rollout gets its own gradient steps: 1 new + 2 replayed minibatches per update.
    assert model.logger.name_to_value["train/replay_rollouts"] == 2
    assert model.logger.name_to_value["train/sgd_steps"] == 3
    assert 0.0 < model.logger.name_to_value["train/ess_replay_min"] <= model.logger.name_to_value["train/ess_replay_mean"] <= 1
    for key in ("vtrace_rho_mean", "rho_truncated_fraction", "value_loss", "explained_variance"):
        assert f"train/{key}" in model.logger.name_to_value
    for key in ("ess", "approx_kl"):  # measured after the update on the new rollout
        assert f"trust_region/{key}" in model.logger.name_to_value


def test_save_load(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = VTraceA2C("MlpPolicy", env, n_steps=8, replay_rollouts=3, n_epochs=2, use_rms_prop=False, seed=0)
    model.learn(2 * 8 * 4)
    obs = env.observation_space.sample()[None].repeat(5, axis=0) + np.linspace(-0.1, 0.1, 5)[:, None].astype(np.float32)
    before, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "model.zip")
    loaded = VTraceA2C.load(tmp_path / "model.zip", env=env)
    after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, after)
    assert loaded.replay_rollouts == 3 and loaded.n_epochs == 2 and len(loaded.replay_store) == 0
    assert isinstance(loaded.policy.optimizer, th.optim.Adam)
    loaded.learn(2 * 8 * 2)
    assert len(loaded.replay_store) == 2


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(rho_bar=0.5, c_bar=1.0), "c_bar"),
        (dict(rho_bar=0.0, c_bar=0.0), "rho_bar"),
        (dict(rho_bar=-1.0), "rho_bar"),
        (dict(pg_rho_bar=0.0), "pg_rho_bar"),
        (dict(replay_rollouts=-1), "replay_rollouts"),
        (dict(n_epochs=0), "n_epochs"),
        (dict(n_env_minibatches=0), "n_env_minibatches"),
        (dict(n_env_minibatches=3), "n_env_minibatches"),
        (dict(correction="is"), "correction"),
    ],
)
def test_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VTraceA2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), **kwargs)


def test_infinite_truncation_allowed():
    model = VTraceA2C("MlpPolicy", "CartPole-v1", rho_bar=math.inf, c_bar=1.0, n_steps=4)
    model.learn(8)


def test_box_actions_and_dict_observations():
    model = VTraceA2C("MlpPolicy", "Pendulum-v1", n_steps=4, n_epochs=2, replay_rollouts=1, seed=0)
    model.learn(16)
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    model = VTraceA2C("MultiInputPolicy", SimpleMultiObsEnv(), n_steps=4, replay_rollouts=1, seed=0)
    model.learn(16)
    assert len(model.replay_store) == 1


@pytest.mark.slow
def test_learns_cartpole(one_torch_thread):
    """Deterministic evaluation reaches 475 within 200k steps (training stops at the first success)."""
    env = make_vec_env("CartPole-v1", n_envs=8, seed=0)
    model = VTraceA2C("MlpPolicy", env, n_steps=16, n_epochs=4, seed=0)
    evaluation = stop_when_solved(eval_freq=2_000 // 8, episodes=5)
    model.learn(200_000, callback=evaluation)
    assert evaluation.best_mean_reward >= 475
    assert model.num_timesteps <= 200_000
