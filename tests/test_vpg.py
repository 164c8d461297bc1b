"""VanillaPG: the gradient against a hand-written REINFORCE estimator, inputs, state, logs."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from envs import NaNRewardEnv, TwoStepMDP
from gymnasium import spaces
from runs import stop_when_solved
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

from sb3_pgx import NonFiniteError, VanillaPG

GAMMA = 0.9
N_STEPS = 16  # 8 whole episodes of the two-step MDP: the rollout ends on an episode end


def collect_one_rollout(model: VanillaPG) -> dict[str, np.ndarray]:
    """Collect one rollout by hand and return its time-ordered arrays (n_envs = 1)."""
    _, callback = model._setup_learn(N_STEPS, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, N_STEPS)
    buffer = model.rollout_buffer
    return {
        "obs": buffer.observations[:, 0].copy(),
        "actions": buffer.actions[:, 0, 0].astype(int),
        "rewards": buffer.rewards[:, 0].copy(),
        "values": buffer.values[:, 0].copy(),
    }


def reinforce_estimate(rollout, weight, bias, baseline):
    """sum_t grad log pi(a_t|s_t) (R_t - b_t) / T for a linear-softmax policy, by hand."""
    obs, actions, rewards = rollout["obs"], rollout["actions"], rollout["rewards"]
    T = len(rewards)
    # Reward-to-go, restarting at each episode end (an episode ends in state 1).
    returns = np.zeros(T)
    future = 0.0
    for t in reversed(range(T)):
        episode_ends_here = obs[t][1] == 1.0
        future = rewards[t] + GAMMA * (0.0 if episode_ends_here else future)
        returns[t] = future
    if baseline == "value":
        b = rollout["values"]
    elif baseline == "mean":
        b = np.full(T, returns.mean())
    else:
        b = np.zeros(T)
    grad_w, grad_b = np.zeros_like(weight), np.zeros_like(bias)
    for t in range(T):
        logits = weight @ obs[t] + bias
        p = np.exp(logits - logits.max())
        p /= p.sum()
        score = np.eye(len(p))[actions[t]] - p  # d log softmax(z)[a] / dz
        grad_w += np.outer(score, obs[t]) * (returns[t] - b[t])
        grad_b += score * (returns[t] - b[t])
    return grad_w / T, grad_b / T


@pytest.mark.parametrize("baseline", ["value", "mean", "none"])
def test_gradient_equals_hand_written_reinforce(baseline):
    # Linear-softmax policy (net_arch=[]), plain SGD with lr 1: the change of the actor's
    # weights is exactly the REINFORCE estimate of the policy gradient.
    model = VanillaPG(
        "MlpPolicy",
        TwoStepMDP(),
        learning_rate=1.0,
        n_steps=N_STEPS,
        gamma=GAMMA,
        baseline=baseline,
        normalize_advantage=False,
        max_grad_norm=1e9,
        policy_kwargs=dict(net_arch=[], optimizer_class=th.optim.SGD),
        seed=1,
    )
    # Start from non-trivial logits so that the score is not the same for every sample.
    with th.no_grad():
        model.policy.action_net.weight.copy_(th.tensor([[0.5, -0.3], [-0.2, 0.4]]))
        model.policy.value_net.weight.copy_(th.tensor([[0.7, 1.3]]))
    rollout = collect_one_rollout(model)
    assert len(set(rollout["actions"].tolist())) == 2, "the rollout should contain both actions"
    weight = model.policy.action_net.weight.detach().double().numpy().copy()
    bias = model.policy.action_net.bias.detach().double().numpy().copy()

    model.train()

    new_weight = model.policy.action_net.weight.detach().double().numpy()
    new_bias = model.policy.action_net.bias.detach().double().numpy()
    expected_w, expected_b = reinforce_estimate(rollout, weight, bias, baseline)
    np.testing.assert_allclose(new_weight - weight, expected_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new_bias - bias, expected_b, rtol=1e-4, atol=1e-6)


def test_exactly_one_policy_step_per_batch():
    model = VanillaPG("MlpPolicy", "CartPole-v1", n_steps=64, n_critic_updates=3, batch_size=32, seed=0)
    actor, _ = model.actor_critic_parameters()
    model.learn(3 * 64)
    optimizer_state = model.policy.optimizer.state
    # Adam counts its steps per parameter: the actor stepped once per update, the critic
    # n_critic_updates * (64 / 32) times per update.
    assert {int(optimizer_state[p]["step"]) for p in actor} == {3}
    critic_steps = {int(optimizer_state[p]["step"]) for p in model.policy.value_net.parameters()}
    assert critic_steps == {3 * 3 * 2}


def test_logs_every_figure_after_the_update():
    model = VanillaPG("MlpPolicy", "CartPole-v1", n_steps=64, seed=0)
    model.set_logger(configure(None, []))
    model.learn(64)
    logged = model.logger.name_to_value
    for key in ("policy_loss", "value_loss", "entropy_loss", "explained_variance"):
        assert f"train/{key}" in logged, key
    for key in ("approx_kl", "ess", "clip_fraction", "kl", "kl_k1", "max_ratio"):
        assert f"trust_region/{key}" in logged, key
    assert 0.0 < logged["trust_region/ess"] <= 1.0
    assert logged["trust_region/kl"] >= 0.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(baseline="median"), "baseline"),
        (dict(n_critic_updates=0), "n_critic_updates"),
        (dict(gamma=1.5), "gamma"),
        (dict(gamma=-0.1), "gamma"),
        (dict(gae_lambda=2.0), "gae_lambda"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=-1e-3), "learning_rate"),
        (dict(learning_rate=lambda progress: progress - 0.5), "learning_rate"),
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=-4), "n_steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(ent_coef=-0.1), "ent_coef"),
        (dict(max_grad_norm=0.0), "max_grad_norm"),
        (dict(diagnostics_epsilon=0.0), "diagnostics_epsilon"),
    ],
)
def test_bad_input_raises_value_error_naming_the_parameter(kwargs, name):
    env = TwoStepMDP()
    with pytest.raises(ValueError, match=name) as error:
        VanillaPG("MlpPolicy", env, **kwargs)
    assert "expected" in str(error.value)


def test_nan_reward_stops_training_with_a_clear_error():
    model = VanillaPG("MlpPolicy", NaNRewardEnv(nan_after=40), n_steps=32, seed=0)
    model.learn(32)  # the first batch is clean
    before = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.raises(NonFiniteError, match="VanillaPG: the rollout.s rewards are not finite at update 2"):
        model.learn(32, reset_num_timesteps=False)
    # The bad update was refused: the weights are the ones of the last good update.
    for old, new in zip(before, model.policy.parameters(), strict=True):
        assert th.equal(old, new)


def test_save_load_identical_predictions_and_continue(tmp_path):
    model = VanillaPG("MlpPolicy", "CartPole-v1", n_steps=64, seed=0)
    model.learn(256)
    obs = np.stack([model.observation_space.sample() for _ in range(20)])
    actions, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "vpg")

    loaded = VanillaPG.load(tmp_path / "vpg", env=make_vec_env("CartPole-v1", n_envs=1))
    loaded_actions, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, loaded_actions)
    assert loaded.baseline == model.baseline and loaded.n_critic_updates == model.n_critic_updates
    for key, value in model.policy.state_dict().items():
        assert th.equal(value, loaded.policy.state_dict()[key])

    loaded.learn(128, reset_num_timesteps=False)
    assert loaded.num_timesteps == 256 + 128
    assert loaded._n_updates == 4 + 2


@pytest.mark.parametrize(
    "env_id, policy",
    [
        ("Pendulum-v1", "MlpPolicy"),  # Box actions
        ("multidiscrete", "MlpPolicy"),
        ("multibinary", "MlpPolicy"),
        ("dict", "MultiInputPolicy"),
    ],
)
def test_action_and_observation_spaces(env_id, policy):
    from stable_baselines3.common.envs import IdentityEnvMultiBinary, IdentityEnvMultiDiscrete, SimpleMultiObsEnv

    env = {
        "multidiscrete": lambda: IdentityEnvMultiDiscrete(dim=3),
        "multibinary": lambda: IdentityEnvMultiBinary(dim=3),
        "dict": lambda: SimpleMultiObsEnv(random_start=True),
    }.get(env_id, lambda: gym.make(env_id))
    model = VanillaPG(policy, make_vec_env(env, n_envs=2), n_steps=32, seed=0)
    model.learn(128)
    assert model._n_updates == 2
    logged = model.logger.name_to_value
    assert logged["trust_region/kl"] >= 0.0 and 0.0 < logged["trust_region/ess"] <= 1.0  # NaN fails both


def test_cnn_policy_on_images():
    from stable_baselines3.common.envs import FakeImageEnv

    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=True)
    model = VanillaPG("CnnPolicy", env, n_steps=16, seed=0)
    model.learn(32)
    assert model._n_updates == 2


def test_unsupported_action_space_is_rejected():
    class TupleActionEnv(TwoStepMDP):
        action_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2)))

    with pytest.raises(ValueError, match=r"action_space=Tuple.* expected one of Box, Discrete, MultiDiscrete, MultiBinary"):
        VanillaPG("MlpPolicy", TupleActionEnv())


@pytest.mark.slow
def test_solves_cartpole():
    # Deterministic 10-episode evaluations every 20k steps; training stops at the first one
    # that reaches 475, which must come within 200k steps.
    evaluation = stop_when_solved(eval_freq=20_000)
    model = VanillaPG("MlpPolicy", "CartPole-v1", seed=0)
    model.learn(200_000, callback=evaluation)
    assert evaluation.best_mean_reward >= 475


def test_linear_schedule_ending_at_zero_is_accepted():
    # rl-zoo3's lin_ schedules reach 0 at the end of training: allowed; negative is not.
    model = VanillaPG("MlpPolicy", TwoStepMDP(), learning_rate=lambda progress: 1e-3 * progress)
    assert model.lr_schedule(1.0) == pytest.approx(1e-3)
