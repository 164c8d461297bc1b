"""Rollout workers on Ray, synchronous collection: every algorithm, the workers act with the
learner's current weights, SB3's callback sequence, seeding, save/load without Ray, bad input."""

import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from probes import EventRecorder
from runs import stop_when_solved, zoo_settings
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_pgx import VanillaPG, registry
from sb3_pgx.common.workers import RolloutWorker, WorkerPool

pytestmark = pytest.mark.xdist_group("ray")

N_WORKERS, ENVS_PER_WORKER, N_STEPS = 2, 2, 8
N_ENVS = N_WORKERS * ENVS_PER_WORKER
WORKER_KEYS = ("train/policy_lag_mean", "train/policy_lag_max", "time/learner_wait_fraction")


def make(algorithm, env="CartPole-v1", **overrides):
    kwargs = {**algorithm.fast_kwargs, "n_steps": N_STEPS, "seed": 0, "device": "cpu", **overrides}
    kwargs["policy_kwargs"] = {"net_arch": [16], **kwargs.get("policy_kwargs", {})}
    if "batch_size" in kwargs and kwargs["batch_size"] is not None:
        kwargs["batch_size"] = min(kwargs["batch_size"], N_STEPS * N_ENVS)
    return algorithm.cls("MlpPolicy", env, n_workers=N_WORKERS, envs_per_worker=ENVS_PER_WORKER, **kwargs)


def test_every_node_listens_on_loopback(ray_session):
    nodes = ray_session.nodes()
    assert nodes and all(node["NodeManagerAddress"] == "127.0.0.1" for node in nodes)


class Recorder(EventRecorder):
    """SB3's callback sequence, and what ``locals`` holds at each step."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple] = []
        self.logged: list[dict] = []
        self.step_locals: list[dict] = []

    def _on_step(self) -> bool:
        super()._on_step()
        self.shapes.append(tuple(np.shape(self.locals[key]) for key in ("rewards", "dones", "new_obs")))
        assert len(self.locals["infos"]) == N_ENVS
        # The rest of what SB3's collect_rollouts gives its callbacks at a step.
        self.step_locals.append({
            "n_steps": self.locals["n_steps"], "env": self.locals["env"] is self.model.env,
            **{key: tuple(np.shape(self.locals[key])) for key in ("actions", "clipped_actions", "values", "log_probs")},
            "in_bounds": all(self.model.action_space.contains(a) for a in self.locals["clipped_actions"]),
        })  # fmt: skip
        return True

    def _on_rollout_end(self) -> None:
        super()._on_rollout_end()
        # What collection logged, read before SB3 dumps (and clears) the logger.
        self.logged.append({key: self.logger.name_to_value[key] for key in WORKER_KEYS if key in self.logger.name_to_value})


@pytest.mark.parametrize("algorithm", registry.ALGORITHMS, ids=lambda algorithm: algorithm.name)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_workers_act_with_the_learners_current_weights(ray_session, algorithm, env_id):
    """Before every update, the buffer's behaviour log-probabilities and values are the learner's
    current policy evaluated on the same observations and actions: the workers acted with its weights."""
    model = make(algorithm, env_id)
    checked, train = [], model.train

    def checking_train():
        buffer = model.rollout_buffer
        observations = th.as_tensor(buffer.observations.reshape(-1, *model.observation_space.shape))
        actions = th.as_tensor(buffer.actions.reshape(len(observations), -1))
        if isinstance(model.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        model.policy.set_training_mode(False)
        with th.no_grad():
            values, log_prob, _ = model.policy.evaluate_actions(observations, actions)
        np.testing.assert_allclose(buffer.log_probs.reshape(-1), log_prob.numpy(), atol=1e-5)
        np.testing.assert_allclose(buffer.values.reshape(-1), values.flatten().numpy(), atol=1e-5)
        checked.append(model.num_timesteps)
        train()

    model.train = checking_train
    recorder = Recorder()
    model.learn(3 * N_STEPS * N_ENVS, callback=recorder)
    assert model.num_timesteps == 3 * N_STEPS * N_ENVS
    assert checked == [N_STEPS * N_ENVS * update for update in (1, 2, 3)]
    # Synchronous: the lag is 0 on every update.
    assert [(row["train/policy_lag_mean"], row["train/policy_lag_max"]) for row in recorder.logged] == [(0.0, 0)] * 3
    assert all(0.0 < row["time/learner_wait_fraction"] <= 1.0 for row in recorder.logged)
    assert recorder.events == (["start"] + ["step"] * N_STEPS + ["end"]) * 3
    action_shape = model.action_space.shape  # () for Discrete: before the buffer's reshape, as in SB3
    assert recorder.step_locals == [
        {"n_steps": step, "env": True, "actions": (N_ENVS, *action_shape), "clipped_actions": (N_ENVS, *action_shape),
         "values": (N_ENVS, 1), "log_probs": (N_ENVS,), "in_bounds": True}
        for step in range(1, N_STEPS + 1)
    ] * 3  # fmt: skip
    assert all(shape[:2] == ((N_ENVS,), (N_ENVS,)) and shape[2][0] == N_ENVS for shape in recorder.shapes)
    assert len(model.workers) == N_WORKERS
    model.close()
    assert model.workers == []


def test_gsde_workers_act_with_the_learners_weights(ray_session):
    """gSDE: the workers sample their own noise; the log-probabilities are the learner's policy's."""
    model = make(registry.get("ppo_kl"), "Pendulum-v1", use_sde=True, sde_sample_freq=4)
    compared, train = [], model.train

    def checking_train():
        buffer = model.rollout_buffer
        observations, actions = th.as_tensor(buffer.observations.reshape(-1, 3)), th.as_tensor(buffer.actions.reshape(-1, 1))
        with th.no_grad():
            _, log_prob, _ = model.policy.evaluate_actions(observations, actions)
        compared.append(np.abs(buffer.log_probs.reshape(-1) - log_prob.numpy()).max())
        train()

    model.train = checking_train
    model.learn(2 * N_STEPS * N_ENVS)
    model.close()
    assert len(compared) == 2 and max(compared) < 1e-5


def test_worker_k_seeds_its_envs_from_seed_plus_k_times_envs_per_worker(ray_session):
    model = make(registry.get("vpg"), seed=7)
    first = model.env.reset()
    expected = make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=7).reset()
    np.testing.assert_array_equal(first, expected)
    model.close()


def test_seeding_running_workers_seeds_them_at_the_next_reset(ray_session):
    """``set_random_seed`` after the workers started: as SB3's ``VecEnv.seed``, the next reset uses it."""
    model = make(registry.get("vpg"), seed=7)
    model.learn(N_STEPS * N_ENVS)
    model.set_random_seed(11)
    np.testing.assert_array_equal(model.env.reset(), make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=11).reset())
    model.close()


def test_episode_statistics_come_from_the_workers(ray_session):
    model = make(registry.get("vpg"), n_steps=64)
    model.learn(2 * 64 * N_ENVS)
    # Random CartPole episodes last ~20 steps: the workers' Monitor infos fill SB3's episode buffer.
    assert len(model.ep_info_buffer) > N_ENVS
    assert all(8 <= info["l"] <= 500 and info["r"] == info["l"] for info in model.ep_info_buffer)
    model.close()


def test_a_second_learns_wait_fraction_counts_from_its_own_start(ray_session):
    """The time between two ``learn`` calls is not the learner's: a second learn's first
    ``time/learner_wait_fraction`` is the share of that learn's own time spent waiting for rollouts."""
    model = make(registry.get("vpg"))
    model.learn(N_STEPS * N_ENVS)
    time.sleep(3.0)  # about 100 times a rollout of 8 x 4 steps
    recorder = Recorder()
    model.learn(N_STEPS * N_ENVS, reset_num_timesteps=False, callback=recorder)
    model.close()
    (row,) = recorder.logged
    assert 0.1 < row["time/learner_wait_fraction"] <= 1.0  # counted from the sleep's start: about 0.01


def test_a_model_trained_with_workers_loads_and_predicts_without_ray(ray_session, tmp_path):
    model = make(registry.get("ppo_kl"))
    model.learn(N_STEPS * N_ENVS)
    model.save(tmp_path / "model")
    model.close()
    observation = np.zeros(4, dtype=np.float32)
    expected, _ = model.predict(observation, deterministic=True)
    script = (
        "import sys, numpy as np\n"
        "from sb3_pgx import AdaptiveKLPPO\n"
        f"model = AdaptiveKLPPO.load({str(tmp_path / 'model')!r}, device='cpu')\n"
        "action, _ = model.predict(np.zeros(4, dtype=np.float32), deterministic=True)\n"
        "from stable_baselines3.common.env_util import make_vec_env\n"
        f"model.set_env(make_vec_env('CartPole-v1', n_envs={N_ENVS}))\n"
        f"model.learn({N_STEPS * N_ENVS}, reset_num_timesteps=False)  # in-process, with an ordinary env\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "print(int(action), model.n_workers)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(int(expected)), str(N_WORKERS)]


class KillsAWorker(BaseCallback):
    """Kills worker 0 (``ray.kill`` on its handle) at the end of the first rollout; records the restarts logged."""

    def __init__(self):
        super().__init__()
        self.logged: list[int] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.logged.append(self.logger.name_to_value["train/worker_restarts"])
        if len(self.logged) == 1:
            import ray

            ray.kill(self.model.workers[0])


def test_a_synchronous_run_with_workers_is_reproducible(ray_session, one_torch_thread):
    """Two learns from one seed end with the same weights: the workers' environments and action sampling
    are seeded and their rollouts laid side by side in worker order, whichever finishes first. Another
    seed ends elsewhere."""

    def weights_after_learn(seed):
        model = make(registry.get("ispg"), seed=seed)
        model.learn(3 * N_STEPS * N_ENVS)
        model.close()
        return th.cat([param.detach().flatten() for param in model.policy.parameters()])

    first = weights_after_learn(0)
    assert th.equal(first, weights_after_learn(0))
    assert not th.equal(first, weights_after_learn(1))


def test_workers_run_one_torch_thread_and_leave_the_callers_alone(ray_session):
    """Each actor reserves one CPU and runs one torch thread. A worker built in the caller's process does not
    change the caller's thread count, on which a training run's float rounding depends."""
    threads = th.get_num_threads()
    th.set_num_threads(2)
    try:
        model = make(registry.get("vpg"))
        model.learn(N_STEPS * N_ENVS)
        in_actors = ray_session.get(
            [worker.__ray_call__.remote(lambda worker: th.get_num_threads()) for worker in model.workers]
        )
        model.close()
        RolloutWorker("CartPole-v1", 1, 0, type(model.policy), model.policy_kwargs, False, -1)
        assert in_actors == [1] * N_WORKERS and th.get_num_threads() == 2
    finally:
        th.set_num_threads(threads)


def test_a_killed_worker_is_replaced_and_learn_completes(ray_session):
    model = make(registry.get("vpg"))
    killer = KillsAWorker()
    model.learn(3 * N_STEPS * N_ENVS, callback=killer)
    assert model.num_timesteps == 3 * N_STEPS * N_ENVS
    assert killer.logged == [0, 1, 1]  # the second rollout found worker 0 dead; its replacement collected it
    assert model.env.restarts == 1 and len(model.workers) == N_WORKERS
    model.close()


class FailingStep(gym.Wrapper):
    """An environment whose ``step`` raises."""

    def step(self, action):
        raise RuntimeError("boom from the environment")


def failing_cartpole():
    return FailingStep(gym.make("CartPole-v1"))


def test_an_env_that_raises_in_a_worker_stops_learn_with_its_error(ray_session):
    import ray
    import ray.cloudpickle

    # Test-module code reaches the workers by value (they cannot import this module).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    model = VanillaPG("MlpPolicy", failing_cartpole, n_steps=N_STEPS, n_workers=1, device="cpu")
    model.env.max_restarts = 1
    with pytest.raises(RuntimeError, match="(?s)failed 2 times in a row.*boom from the environment"):
        model.learn(N_STEPS)
    assert model.env.restarts == 1
    # The failed worker was replaced and its count cleared before the error: a later learn whose worker
    # dies (here killed) gets it replaced again, not an error at once for failures of the last learn.
    ray.kill(model.workers[0])
    with pytest.raises(RuntimeError, match="(?s)failed 2 times in a row.*boom from the environment"):
        model.learn(N_STEPS)
    assert model.env.restarts == 3  # the killed worker's replacement, then one after its env raised
    model.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_workers=-1), "n_workers=-1"),
        (dict(n_workers=2, envs_per_worker=0), "envs_per_worker=0"),
        (dict(n_workers=2, ray_address=3), "ray_address=3"),
    ],
)
def test_bad_worker_arguments_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VanillaPG("MlpPolicy", "CartPole-v1", **kwargs)


def test_an_env_object_cannot_go_to_the_workers():
    with pytest.raises(ValueError, match="pass its id"):
        VanillaPG("MlpPolicy", make_vec_env("CartPole-v1"), n_workers=2)


def test_workers_without_ray_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r"sb3-pgx\[distributed\]"):
        VanillaPG("MlpPolicy", "CartPole-v1", n_workers=2)


def test_the_pool_refuses_stepping():
    pool = WorkerPool("CartPole-v1", 1, 1)
    with pytest.raises(NotImplementedError, match="workers step their own environments"):
        pool.step(np.zeros(1, dtype=int))


class NaNObservationAfterTwoSteps(gym.Env):
    """A Box-action env whose third observation is NaN."""

    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(3, np.nan if self.t == 2 else 0.0, np.float32), 0.0, False, False, {}


def test_a_worker_collects_without_torchs_argument_checks():
    """As the learner collects: torch's per-step checks (which would raise on the Gaussian of a NaN
    observation) are off, and the learner checks the rollout as it replays it (FiniteObservationCheck)."""
    learner = VanillaPG("MlpPolicy", NaNObservationAfterTwoSteps(), n_steps=4, device="cpu")
    worker = RolloutWorker(NaNObservationAfterTwoSteps, 1, 0, type(learner.policy), learner.policy_kwargs, False, -1)
    rollout = worker.collect(learner.policy.state_dict(), 0, 0, 4)
    assert np.isnan(rollout["observations"][2]).all() and np.isfinite(rollout["observations"][:2]).all()
    assert th.distributions.Distribution._validate_args  # restored


def test_a_worker_loads_every_new_broadcast_even_at_the_same_version():
    """Weights changed outside an update (``set_parameters``, a learn stopped mid-update) come at the same
    learner version: the worker keys its weights by broadcast, so it acts with the new ones."""
    learner = VanillaPG("MlpPolicy", "CartPole-v1", n_steps=4, device="cpu", seed=0)
    worker = RolloutWorker("CartPole-v1", 2, 0, type(learner.policy), learner.policy_kwargs, False, -1)

    def behaviour_matches_learner(rollout):
        observations = th.as_tensor(rollout["observations"].reshape(-1, 4))
        actions = th.as_tensor(rollout["actions"].reshape(-1)).long()
        with th.no_grad():
            _, log_prob, _ = learner.policy.evaluate_actions(observations, actions)
        return np.allclose(rollout["log_probs"].reshape(-1), log_prob.numpy(), atol=1e-5)

    assert behaviour_matches_learner(worker.collect(learner.policy.state_dict(), 0, 0, 4))
    with th.no_grad():
        for param in learner.policy.parameters():
            param.add_(th.randn_like(param))
    rollout = worker.collect(learner.policy.state_dict(), 1, 0, 4)  # the same version, a new broadcast
    assert rollout["version"] == 0 and behaviour_matches_learner(rollout)
    # The same broadcast again: the worker keeps what it holds (an empty state dict would not load).
    assert behaviour_matches_learner(worker.collect({}, 1, 1, 4))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", registry.ALGORITHMS, ids=lambda algorithm: algorithm.name)
def test_learns_cartpole_with_two_workers(ray_session, one_torch_thread, algorithm):
    """Each algorithm, with its CartPole-v1 settings of hyperparams/<name>.yml and its envs split over
    2 workers (at least 1 each), reaches a deterministic 10-episode evaluation of 475 within the yml's budget,
    on seed 0 or, failing that, seed 1. A run is reproducible on one machine and thread count (the learner's
    is pinned to one here), but another CPU rounds floats differently, so one seed may fall short there."""
    config, n_envs, budget = zoo_settings(algorithm.name)
    envs_per_worker = max(1, n_envs // 2)
    workers = dict(n_workers=2, envs_per_worker=envs_per_worker)
    best = {}
    for seed in (0, 1):
        model = algorithm.cls("MlpPolicy", "CartPole-v1", **config, **workers, seed=seed, device="cpu")
        evaluation = stop_when_solved(eval_freq=max(10_000 // (2 * envs_per_worker), 1))
        model.learn(budget, callback=evaluation)
        model.close()
        best[seed] = (model.num_timesteps, evaluation.best_mean_reward)
        if evaluation.best_mean_reward >= 475:
            break
    assert max(reward for _, reward in best.values()) >= 475, (algorithm.name, best)


NODE_LOSS_SCRIPT = """
import os
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
import ray
from ray.cluster_utils import Cluster
from stable_baselines3.common.callbacks import BaseCallback
from sb3_pgx import VanillaPG

# A head without CPUs and one node with two: both workers run on that node.
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
first = cluster.add_node(num_cpus=2)
ray.init(address=cluster.address, log_to_driver=False)


class MovesToANewNode(BaseCallback):
    def __init__(self):
        super().__init__()
        self.logged = []

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        self.logged.append(self.logger.name_to_value["train/worker_restarts"])
        if len(self.logged) == 1:  # a second node joins, the workers' node goes away
            cluster.add_node(num_cpus=2)
            cluster.remove_node(first)


model = VanillaPG("MlpPolicy", "CartPole-v1", n_steps=8, n_workers=2, device="cpu", seed=0)
callback = MovesToANewNode()
model.learn(3 * 8 * 2, callback=callback)
addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
print(model.num_timesteps, callback.logged, sorted(addresses))
ray.shutdown()
cluster.shutdown()
"""


def test_learn_survives_the_loss_of_the_workers_node():
    """On a simulated 3-node cluster (``ray.cluster_utils.Cluster``, its own Ray, in a subprocess): the
    node running both workers goes away after the first rollout; they are replaced on another node."""
    pytest.importorskip("ray")
    result = subprocess.run([sys.executable, "-c", NODE_LOSS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "48 [0, 2, 2] ['127.0.0.1']"
