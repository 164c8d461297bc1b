"""rl-zoo3 path: registration, default hyperparameter files, and a real train + enjoy run."""

import argparse
import inspect
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import yaml

from sb3_pgx.registry import ALGORITHMS, get
from sb3_pgx.zoo import hyperparams_file, register
from sb3_pgx.zoo.__main__ import with_default_config

rl_zoo3 = pytest.importorskip("rl_zoo3")


def test_every_algorithm_is_registered_with_a_sampler_and_a_hyperparameter_file():
    from rl_zoo3 import hyperparams_opt, utils

    register()
    for algorithm in ALGORITHMS:
        name = algorithm.name
        assert utils.ALGOS[name] is algorithm.cls
        assert hyperparams_opt.HYPERPARAMS_SAMPLER[name] is algorithm.sampler
        assert name in hyperparams_opt.HYPERPARAMS_CONVERTER
        config = yaml.safe_load(hyperparams_file(name).read_text())
        assert "CartPole-v1" in config


def test_every_sampler_gives_constructor_arguments():
    import optuna
    from rl_zoo3 import hyperparams_opt

    register()
    for algorithm in ALGORITHMS:
        study = optuna.create_study()
        trial = study.ask()
        params = hyperparams_opt.HYPERPARAMS_SAMPLER[algorithm.name](trial, n_actions=2, n_envs=1, additional_args={})
        params.pop("policy_kwargs", None)
        # Every sampled name must be a constructor argument of the algorithm.
        accepted = set(inspect.signature(algorithm.cls.__init__).parameters)
        assert set(params) <= accepted, set(params) - accepted


@pytest.mark.parametrize("name", ["ispg", "ppo_kl", "mdpo"])
def test_sampled_batch_size_fits_the_rollout(name):
    """The shortest rollout (32 steps x 2 envs) with the largest minibatch (512): capped, so the
    constructor, which refuses a minibatch larger than the rollout, accepts the trial's arguments."""
    import optuna
    from rl_zoo3 import hyperparams_opt
    from stable_baselines3.common.env_util import make_vec_env

    register()
    study = optuna.create_study()
    study.enqueue_trial({"n_steps_pow": 5, "batch_size_pow": 9})
    params = hyperparams_opt.HYPERPARAMS_SAMPLER[name](study.ask(), n_actions=2, n_envs=2, additional_args={})
    assert (params["n_steps"], params["batch_size"]) == (32, 64)
    params.pop("policy_kwargs")
    get(name).cls("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), **params, _init_setup_model=False)


def experiment(tmp_path, algo, **kwargs):
    """rl-zoo3's experiment manager as ``python -m sb3_pgx.zoo train`` makes it, on CartPole-v1."""
    from sb3_pgx.zoo.experiment import WorkersExperimentManager

    register()
    config = str(hyperparams_file(algo))
    return WorkersExperimentManager(argparse.Namespace(), algo, "CartPole-v1", str(tmp_path), config=config, **kwargs)


def test_a_reloaded_trial_gets_the_batch_size_its_sampler_capped(tmp_path):
    """rl-zoo3 rebuilds a trial's arguments (``--storage --study-name --trial-id``) with a converter that cannot
    see ``n_envs``: the minibatch the sampler capped at the rollout is capped again once ``n_envs`` is known."""
    import optuna
    from rl_zoo3 import hyperparams_opt

    register()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log")))
    study = optuna.create_study(storage=storage, study_name="s")
    for _ in range(2):  # rl-zoo3 reloads only a trial id that is not 0
        study.enqueue_trial({"n_steps_pow": 5, "batch_size_pow": 9})  # 32 steps x 8 envs, a minibatch of 512
        trial = study.ask()
        hyperparams_opt.HYPERPARAMS_SAMPLER["ispg"](trial, n_actions=2, n_envs=8, additional_args={})
        study.tell(trial, 0.0)
    manager = experiment(tmp_path, "ispg", storage=str(tmp_path / "study.log"), study_name="s", trial_id=1, verbose=0)
    model, _ = manager.setup_experiment()
    assert (model.n_steps, model.n_envs, model.batch_size) == (32, 8, 256)


def test_optimize_with_workers_sets_up_and_says_n_envs_is_replaced(tmp_path):
    """rl-zoo3 closes the training env before an Optuna study: with workers, the env factory."""
    manager = experiment(tmp_path, "ispg", hyperparams={"n_workers": 2}, optimize_hyperparameters=True, verbose=0)
    with pytest.warns(UserWarning, match="n_envs=8 is replaced by the workers' env columns per update, 2"):
        assert manager.setup_experiment() is None


def test_continuing_training_with_workers_is_refused(tmp_path):
    from sb3_pgx import VanillaPG

    VanillaPG("MlpPolicy", "CartPole-v1", n_steps=8).save(tmp_path / "model.zip")
    manager = experiment(tmp_path, "vpg", hyperparams={"n_workers": 2}, trained_agent=str(tmp_path / "model.zip"))
    with pytest.raises(ValueError, match="is not supported with n_workers=2: a loaded model trains in-process"):
        manager.setup_experiment()


def test_train_gets_our_hyperparameter_file_by_default():
    args = with_default_config("train", ["--algo", "vpg", "--env", "CartPole-v1"])
    assert args[-2:] == ["--conf-file", str(hyperparams_file("vpg"))]
    # A user's own file wins; other algorithms and scripts are left alone.
    assert "--conf-file" not in with_default_config("enjoy", ["--algo", "vpg"])
    assert with_default_config("train", ["--algo", "ppo"]) == ["--algo", "ppo"]
    for conf in (["-conf", "mine.yml"], ["--conf", "mine.yml"], ["-conf=mine.yml"], ["--conf-file=mine.yml"]):
        own = ["--algo=vpg", "--env", "CartPole-v1", *conf]
        assert with_default_config("train", own) == own


@pytest.mark.parametrize("algo", [algorithm.name for algorithm in ALGORITHMS])
def test_zoo_train_then_enjoy(tmp_path, algo):
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    common = ["--algo", algo, "--env", "CartPole-v1", "-f", str(tmp_path / "logs")]
    train = subprocess.run(
        [sys.executable, "-m", "sb3_pgx.zoo", "train", *common, "-n", "2048", "--eval-freq", "1024",
         "--eval-episodes", "2", "--seed", "1", "--n-eval-envs", "1", "--log-interval", "-1"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert (tmp_path / "logs" / algo / "CartPole-v1_1" / "CartPole-v1.zip").is_file()
    assert (tmp_path / "logs" / algo / "CartPole-v1_1" / "evaluations.npz").is_file()
    enjoy = subprocess.run(
        [sys.executable, "-m", "sb3_pgx.zoo", "enjoy", *common, "-n", "50", "--no-render"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]


def test_unknown_script_is_refused():
    result = subprocess.run([sys.executable, "-m", "sb3_pgx.zoo", "fly"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "usage: python -m sb3_pgx.zoo" in result.stderr


@pytest.mark.parametrize("algo", [algorithm.name for algorithm in ALGORITHMS])
def test_every_campaign_env_entry_builds_and_trains(tmp_path, algo):
    """Each of our yml entries for the 8 benchmark envs goes through rl-zoo3's own pre-processing
    (schedules, normalisation, policy_kwargs strings, env wrappers) and survives one update, so a
    typo cannot wait hours into a campaign to crash it."""
    import argparse

    pytest.importorskip("Box2D")
    pytest.importorskip("mujoco")
    from rl_zoo3.exp_manager import ExperimentManager

    from benchmarks.run import ENVS

    register()
    config = yaml.safe_load(hyperparams_file(algo).read_text())
    for env_id in ENVS:
        assert env_id in config, f"hyperparams/{algo}.yml has no entry for {env_id}"
        manager = ExperimentManager(
            argparse.Namespace(),
            algo,
            env_id,
            str(tmp_path / env_id),
            n_timesteps=1,
            eval_freq=-1,
            config=str(hyperparams_file(algo)),
            verbose=0,
            device="cpu",
        )
        model, _ = manager.setup_experiment()
        budget = model.n_steps * model.n_envs
        model.learn(budget)
        assert model.num_timesteps == budget
        assert model._n_updates >= 1, (algo, env_id)
        model.get_env().close()


class AtariEnv(gym.Env):
    """Stands in for ale-py's env: rl-zoo3 tells an Atari id by ``AtariEnv`` in its entry point. Atari's
    84x84 grey frames (what AtariWrapper makes of the screen), Discrete(4), episodes of 20 steps."""

    observation_space = gym.spaces.Box(0, 255, shape=(84, 84, 1), dtype=np.uint8)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(action == 1), False, self.t >= 20, {}


@pytest.mark.parametrize("algo", [algorithm.name for algorithm in ALGORITHMS])
def test_atari_ids_get_the_atari_entry_or_a_clear_error(tmp_path, algo):
    """An Atari id takes the yml's ``atari`` entry (AtariWrapper, 4 frames, CnnPolicy), which must build and
    train through rl-zoo3's pre-processing; without one, a ValueError instead of rl-zoo3's ``KeyError``."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from sb3_pgx.zoo.experiment import WorkersExperimentManager

    env_id = "SbPgxStandInNoFrameskip-v4"
    if env_id not in gym.envs.registry:
        gym.register(env_id, entry_point=AtariEnv)
    register()
    config = str(hyperparams_file(algo))
    manager = WorkersExperimentManager(argparse.Namespace(), algo, env_id, str(tmp_path), config=config, verbose=0)
    assert manager._is_atari
    if "atari" not in yaml.safe_load(hyperparams_file(algo).read_text()):
        with pytest.raises(ValueError, match=r"no entry for the Atari env 'SbPgxStandInNoFrameskip-v4' and no 'atari'"):
            manager.read_hyperparameters()
        return
    hyperparams, _ = manager.read_hyperparameters()
    assert hyperparams["env_wrapper"] == ["stable_baselines3.common.atari_wrappers.AtariWrapper"]
    kwargs, _, _, _ = manager._preprocess_hyperparams(hyperparams)
    assert manager.frame_stack == 4 and kwargs["policy"] == "CnnPolicy"
    # The stand-in's frames are already AtariWrapper's output; stacked as rl-zoo3 stacks them.
    env = VecFrameStack(make_vec_env(AtariEnv, n_envs=manager.n_envs, seed=0), n_stack=manager.frame_stack)
    get(algo).cls(env=env, **kwargs, _init_setup_model=False)  # the entry's settings pass the checks as they are
    # One update on a shorter rollout keeps the test quick (PPO's minibatch of 256 is then the whole 8 x 32).
    model = get(algo).cls(env=env, seed=0, device="cpu", **{**kwargs, "n_steps": min(kwargs["n_steps"], 32)})
    assert model.observation_space.shape == (4, 84, 84)  # 4 frames; SB3 puts channels first for the CNN
    model.learn(model.n_steps * model.n_envs)
    assert model._n_updates >= 1
