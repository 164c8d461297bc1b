"""RLlib IMPALA throughput on CartPole-v1: env steps sampled (and trained) per second, for comparison with sb3_pgx's
Ray actor-learner.

    python -m venv rllib-venv && rllib-venv/bin/pip install torch==2.13.0 'ray[rllib]==2.60.0'
    rllib-venv/bin/python benchmarks/rllib_impala.py --env-runners 1 --envs-per-runner 8

Standalone: runs in RLlib's own virtualenv (RLlib pins its own gymnasium) and imports nothing from this repo. Builds
RLlib's IMPALA (new API stack, torch, a 64x64 MLP, otherwise RLlib's defaults) with the learner in this process
(``num_learners=0``), calls ``algo.train()`` twice to warm up, then ``--seconds / --iter-seconds`` times (one call
lasts ``--iter-seconds``: RLlib's ``min_time_s_per_iteration``, 10 by default, here 5 to keep a run short), and prints
one line of JSON with the rates over that timed window, from the lifetime counters in the result dicts.
"""

import argparse
import json
import math
import os
import time

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import gymnasium as gym  # noqa: E402
import ray  # noqa: E402
from ray.rllib.algorithms.impala import IMPALAConfig  # noqa: E402
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig  # noqa: E402

SAMPLED = ("env_runners", "num_env_steps_sampled_lifetime")
TRAINED = ("learners", "__all_modules__", "num_env_steps_trained_lifetime")
RETURN = ("env_runners", "episode_return_mean")


def lookup(result, keys):
    """The value at the nested ``keys`` of a result dict, None where absent or NaN."""
    for k in keys:
        if not isinstance(result, dict) or k not in result:
            return None
        result = result[k]
    return None if math.isnan(result) else float(result)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-runners", type=int, default=1, help="remote env runners (default 1)")
    p.add_argument("--envs-per-runner", type=int, default=8, help="vectorised envs per env runner (default 8)")
    p.add_argument("--fragment", type=int, default=50, help="rollout fragment length (default 50)")
    p.add_argument("--seconds", type=float, default=60.0, help="timed window after warm-up, seconds (default 60)")
    p.add_argument("--iter-seconds", type=float, default=5.0, help="wall time of one train() call (default 5)")
    p.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs given to Ray (default: all cores)")
    args = p.parse_args()

    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    config = (
        IMPALAConfig()
        .environment("CartPole-v1")
        .framework("torch")
        .env_runners(
            num_env_runners=args.env_runners,
            num_envs_per_env_runner=args.envs_per_runner,
            rollout_fragment_length=args.fragment,
        )
        .learners(num_learners=0)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64]))
        .reporting(min_time_s_per_iteration=args.iter_seconds)
    )
    algo = config.build_algo()
    # EnvRunners block in sample() until RLlib's state-server actor is up: wait for it here, without busy-polling.
    server = getattr(algo, "_env_runner_state_server", None)
    if server is not None:
        ray.get(server.get_version.remote())
    for _ in range(2):
        result = algo.train()
    start = time.perf_counter()
    sampled0, trained0 = lookup(result, SAMPLED) or 0.0, lookup(result, TRAINED) or 0.0
    for _ in range(max(1, round(args.seconds / args.iter_seconds))):
        result = algo.train()
    elapsed = time.perf_counter() - start
    sampled, trained, ret = lookup(result, SAMPLED), lookup(result, TRAINED), lookup(result, RETURN)
    algo.stop()
    ray.shutdown()
    print(
        json.dumps(
            {
                "rllib_version": ray.__version__,
                "gymnasium_version": gym.__version__,
                "env": "CartPole-v1",
                "env_runners": args.env_runners,
                "envs_per_runner": args.envs_per_runner,
                "fragment": args.fragment,
                "seconds": round(elapsed, 2),
                "sampled_per_s": None if sampled is None else round((sampled - sampled0) / elapsed, 1),
                "trained_per_s": None if trained is None else round((trained - trained0) / elapsed, 1),
                "episode_return_mean": ret,
            }
        )
    )


if __name__ == "__main__":
    main()
