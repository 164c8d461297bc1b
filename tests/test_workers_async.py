"""Rollout workers on Ray, asynchronous collection (IMPALA's actor-learner layout, VTraceA2C only):
the lag it produces, V-trace's inputs against the behaviour policy recomputed independently, SB3's
callback sequence, faults, bad input, and learning CartPole."""

import copy
import functools
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from probes import EventRecorder
from runs import stop_when_solved, zoo_settings
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from test_vtrace import naive_vtrace
from test_workers import KillsAWorker

from sb3_pgx import VTraceA2C, registry
from sb3_pgx.a2c_vtrace import a2c_vtrace as a2c_vtrace_module

pytestmark = pytest.mark.xdist_group("ray")

N_WORKERS, ENVS_PER_WORKER, N_STEPS = 2, 2, 8


def make_async(env="CartPole-v1", **overrides):
    kwargs = dict(n_steps=N_STEPS, seed=0, device="cpu", policy_kwargs={"net_arch": [16]}, **overrides)
    return VTraceA2C("MlpPolicy", env, n_workers=N_WORKERS, envs_per_worker=ENVS_PER_WORKER, asynchronous=True, **kwargs)


class Snapshots(EventRecorder):
    """At the end of each rollout (just before ``train()``): the buffer's contents, a copy of the learner's
    policy, and the lag and restarts logged; records SB3's callback events."""

    def __init__(self):
        super().__init__()
        self.rollouts: list[dict] = []

    def _on_step(self) -> bool:
        super()._on_step()
        assert len(self.locals["infos"]) == ENVS_PER_WORKER and np.shape(self.locals["rewards"]) == (ENVS_PER_WORKER,)
        return True

    def _on_rollout_end(self) -> None:
        super()._on_rollout_end()
        buffer, logged = self.model.rollout_buffer, self.logger.name_to_value
        self.rollouts.append(
            dict(
                observations=buffer.observations.copy(),
                actions=buffer.actions.copy(),
                rewards=buffer.rewards.copy(),
                episode_starts=buffer.episode_starts.copy(),
                log_probs=buffer.log_probs.copy(),
                last_obs=np.array(self.model._last_obs),
                last_dones=np.array(self.model._last_episode_starts),
                policy=copy.deepcopy(self.model.policy),
                lag=logged["train/policy_lag_max"],
                lag_mean=logged["train/policy_lag_mean"],
                restarts=logged["train/worker_restarts"],
            )
        )


def evaluate(policy, observations, actions):
    """``log pi(a|x)`` and ``V(x)`` of ``policy`` in eval mode, on ``[T, N, ...]`` arrays; ``[T, N]`` each."""
    T, N = actions.shape[:2]
    policy.set_training_mode(False)
    with th.no_grad():
        values, log_prob, _ = policy.evaluate_actions(
            th.as_tensor(observations.reshape(T * N, -1)), th.as_tensor(actions.reshape(T * N)).long()
        )
    return log_prob.view(T, N).numpy(), values.view(T, N).numpy()


def test_a_worker_held_behind_gets_vtrace_inputs_against_its_behaviour_policy(ray_session, monkeypatch):
    """Weights go out once (``broadcast_interval`` larger than the run): every rollout is collected by the
    initial policy while the learner moves on, so the lag of update ``u`` is ``u``. V-trace's inputs are
    recomputed here independently: the behaviour log-probabilities from a copy of the initial policy, the
    current ones and the values from a copy of the learner's policy taken before the update, and the
    targets and advantages by the explicit double sum of the paper."""
    seen, vtrace = [], a2c_vtrace_module.vtrace

    def recording_vtrace(**inputs):
        result = vtrace(**inputs)
        seen.append({key: value.clone() if th.is_tensor(value) else value for key, value in inputs.items()})
        seen[-1].update(vs=result.vs.clone(), pg_advantages=result.pg_advantages.clone())
        return result

    monkeypatch.setattr(a2c_vtrace_module, "vtrace", recording_vtrace)
    model = make_async(broadcast_interval=1000, gamma=0.9, gae_lambda=0.95, rho_bar=1.5, c_bar=1.2)
    initial = copy.deepcopy(model.policy)
    snapshots = Snapshots()
    n_updates = 4
    model.learn(n_updates * N_STEPS * ENVS_PER_WORKER, callback=snapshots)
    model.close()

    assert model.num_timesteps == n_updates * N_STEPS * ENVS_PER_WORKER
    assert snapshots.events == (["start"] + ["step"] * N_STEPS + ["end"]) * n_updates
    assert [rollout["lag"] for rollout in snapshots.rollouts] == list(range(n_updates))
    # The first update is on-policy (its targets come from the buffer); each later one ran V-trace once.
    assert len(seen) == n_updates - 1
    for rollout, inputs in zip(snapshots.rollouts[1:], seen, strict=True):
        actions = rollout["actions"][..., 0]
        behaviour_log_prob, _ = evaluate(initial, rollout["observations"], actions)
        np.testing.assert_allclose(rollout["log_probs"], behaviour_log_prob, atol=1e-5)  # the workers acted with it
        current_log_prob, values = evaluate(rollout["policy"], rollout["observations"], actions)
        log_rhos = current_log_prob - behaviour_log_prob
        assert np.abs(log_rhos).max() > 1e-3  # the learner moved on: the correction is not the identity
        np.testing.assert_allclose(inputs["log_rhos"].numpy(), log_rhos, atol=1e-5)
        np.testing.assert_allclose(inputs["values"].numpy(), values, atol=1e-5)
        with th.no_grad():
            bootstrap = rollout["policy"].predict_values(th.as_tensor(rollout["last_obs"])).flatten().numpy()
        np.testing.assert_allclose(inputs["bootstrap_value"].numpy(), bootstrap, atol=1e-5)
        # done_t is the next step's episode start (the last step's: the dones the rollout ended with).
        dones = np.concatenate([rollout["episode_starts"][1:], rollout["last_dones"][None]])
        np.testing.assert_allclose(inputs["discounts"].numpy(), 0.9 * (1 - dones), atol=1e-7)
        np.testing.assert_allclose(inputs["rewards"].numpy(), rollout["rewards"], atol=1e-7)
        vs, advantages = naive_vtrace(
            log_rhos, 0.9 * (1 - dones), rollout["rewards"], values, bootstrap, 1.5, 1.2, 1.0, lam=0.95
        )
        np.testing.assert_allclose(inputs["vs"].numpy(), vs, atol=1e-4)
        np.testing.assert_allclose(inputs["pg_advantages"].numpy(), advantages, atol=1e-4)


class TimeOuts(BaseCallback):
    """Per rollout: each step's rewards as the env returned them, dones and infos (``on_step``'s locals, as
    SB3 gives them before the time-out bootstrap), then the buffer's rewards and a copy of the learner's policy."""

    def __init__(self):
        super().__init__()
        self.rollouts: list[dict] = []

    def _on_rollout_start(self) -> None:
        self.rollouts.append(dict(steps=[]))

    def _on_step(self) -> bool:
        self.rollouts[-1]["steps"].append(
            (np.array(self.locals["rewards"]), np.array(self.locals["dones"]), copy.deepcopy(self.locals["infos"]))
        )
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts[-1].update(buffer_rewards=self.model.rollout_buffer.rewards.copy(),
                                 policy=copy.deepcopy(self.model.policy))  # fmt: skip


def test_the_time_out_bootstrap_uses_the_learners_critic_not_the_lagging_workers(ray_session):
    """Where a time limit cuts an episode, SB3 adds ``gamma * V(terminal observation)`` to the reward. A worker
    held at the initial weights has the initial critic: the learner computes the bootstrap with its own
    critic at the update, as SB3's collection does, so the lag does not reach the targets through it."""
    env = functools.partial(gym.make, "CartPole-v1", max_episode_steps=3)  # nearly every episode times out
    model = make_async(env=env, broadcast_interval=1000, gamma=0.9)
    initial = copy.deepcopy(model.policy)
    recorder = TimeOuts()
    model.learn(4 * N_STEPS * ENVS_PER_WORKER, callback=recorder)
    model.close()

    def value(policy, observation):
        policy.set_training_mode(False)
        with th.no_grad():
            return policy.predict_values(th.as_tensor(observation[None])).item()

    checked, initial_gap = 0, 0.0
    for rollout in recorder.rollouts:
        for step, (rewards, dones, infos) in enumerate(rollout["steps"]):
            for index, (done, info) in enumerate(zip(dones, infos, strict=True)):
                expected = rewards[index]
                if done and info.get("TimeLimit.truncated", False):
                    terminal = info["terminal_observation"]
                    expected += 0.9 * value(rollout["policy"], terminal)
                    initial_gap = max(initial_gap, abs(value(rollout["policy"], terminal) - value(initial, terminal)))
                    checked += 1
                assert rollout["buffer_rewards"][step, index] == pytest.approx(expected, abs=1e-5)
    assert checked >= 10
    assert initial_gap > 1e-3  # the learner's critic moved away from the workers': the check tells them apart


def test_asynchronous_workers_lag_and_log_it(ray_session):
    """With fresh weights every update and two requests queued per worker, data arrives behind the learner."""
    model = make_async()
    snapshots = Snapshots()
    model.learn(12 * N_STEPS * ENVS_PER_WORKER, callback=snapshots)
    model.close()
    lags = [rollout["lag"] for rollout in snapshots.rollouts]
    assert len(lags) == 12 and lags[0] == 0 and np.mean(lags) > 0
    assert all(rollout["lag_mean"] == rollout["lag"] >= 0 for rollout in snapshots.rollouts)


def test_a_killed_asynchronous_worker_is_replaced_and_learn_completes(ray_session):
    model = make_async()
    killer = KillsAWorker()
    model.learn(10 * N_STEPS * ENVS_PER_WORKER, callback=killer)
    assert model.num_timesteps == 10 * N_STEPS * ENVS_PER_WORKER
    assert killer.logged[0] == 0 and killer.logged[-1] >= 1 and model.env.restarts >= 1
    assert len(model.workers) == N_WORKERS
    model.close()


@pytest.mark.parametrize(
    "algorithm",
    [algorithm for algorithm in registry.ALGORITHMS if algorithm.name != "a2c_vtrace"],
    ids=lambda algorithm: algorithm.name,
)
def test_only_vtrace_takes_asynchronous_workers(algorithm):
    with pytest.raises(ValueError, match="asynchronous=True is not allowed with .*only V-trace corrects"):
        algorithm.cls("MlpPolicy", "CartPole-v1", n_workers=2, asynchronous=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_workers=0, asynchronous=True), "asynchronous=True is not allowed with n_workers=0"),
        (dict(n_workers=2, asynchronous="yes"), "asynchronous='yes'"),
        (dict(n_workers=2, asynchronous=True, max_inflight=0), "max_inflight=0"),
        (dict(n_workers=2, asynchronous=True, broadcast_interval=0), "broadcast_interval=0"),
        (dict(n_workers=2, asynchronous=True, broadcast_interval=1.5), "broadcast_interval=1.5"),
    ],
)
def test_bad_asynchronous_arguments_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VTraceA2C("MlpPolicy", "CartPole-v1", **kwargs)


@pytest.mark.slow
def test_asynchronous_vtrace_solves_cartpole(ray_session):
    """VTraceA2C with its CartPole-v1 settings of hyperparams/a2c_vtrace.yml, asynchronous on 2 workers of
    half the yml's envs each: mean lag > 0, and a deterministic 10-episode evaluation of 475 within 300k steps."""
    config, n_envs, _ = zoo_settings("a2c_vtrace")
    model = VTraceA2C(
        "MlpPolicy", "CartPole-v1", **config, n_workers=2, envs_per_worker=n_envs // 2, asynchronous=True, seed=0, device="cpu"
    )
    lags, train = [], model.train

    def lag_recording_train():
        lags.append(model.rollout_policy_lag)
        train()

    model.train = lag_recording_train
    evaluation = stop_when_solved(eval_freq=10_000 // (n_envs // 2))
    model.learn(300_000, callback=evaluation)
    model.close()
    assert np.mean(lags) > 0
    assert evaluation.best_mean_reward >= 475, (model.num_timesteps, evaluation.best_mean_reward)


def test_zoo_train_with_asynchronous_workers(tmp_path):
    """rl-zoo3's train command with the workers' keys given as hyperparameters: the training env goes to the
    workers as a function that builds one env, the evaluation env stays rl-zoo3's; the model saves."""
    common = ["--algo", "a2c_vtrace", "--env", "CartPole-v1", "-f", str(tmp_path / "logs"), "--seed", "1"]
    train = subprocess.run(
        [sys.executable, "-m", "sb3_pgx.zoo", "train", *common, "-n", "2000", "--eval-freq", "1000",
         "--eval-episodes", "2", "--n-eval-envs", "1", "--log-interval", "-1",
         "--hyperparams", "n_workers:2", "envs_per_worker:2", "asynchronous:True", "n_steps:8"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    run = tmp_path / "logs" / "a2c_vtrace" / "CartPole-v1_1"
    assert (run / "CartPole-v1.zip").is_file()
    evaluations = np.load(run / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [1000, 2000]  # eval_freq counted in the update's 2 env columns
    model = VTraceA2C.load(run / "CartPole-v1.zip")
    assert (model.n_workers, model.envs_per_worker, model.asynchronous) == (2, 2, True)


def test_zoo_refuses_vec_env_wrappers_with_workers(tmp_path):
    train = subprocess.run(
        [sys.executable, "-m", "sb3_pgx.zoo", "train", "--algo", "vpg", "--env", "CartPole-v1", "-f",
         str(tmp_path / "logs"), "-n", "100", "--hyperparams", "n_workers:1", "normalize:True"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert train.returncode != 0
    assert "normalize=True is not supported with n_workers=1" in train.stderr


def test_in_process_collection_has_no_lag(ray_session, tmp_path):
    """A model trained on asynchronous workers, loaded with an ordinary env, trains in-process on its own
    data: lag 0, so the first step takes the buffer's targets again."""
    model = make_async()
    model.learn(6 * N_STEPS * ENVS_PER_WORKER)
    model.close()
    model.save(tmp_path / "model.zip")
    loaded = VTraceA2C.load(tmp_path / "model.zip", env=make_vec_env("CartPole-v1", n_envs=2), device="cpu")
    loaded.rollout_policy_lag = 5  # as left by the workers' last rollout
    loaded.learn(N_STEPS * 2, reset_num_timesteps=True)
    assert loaded.rollout_policy_lag == 0
