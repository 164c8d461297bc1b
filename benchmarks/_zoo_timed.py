"""``python -m benchmarks._zoo_timed TIMING_JSON train ...``: ``python -m sb3_pgx.zoo train ...`` with a stopwatch.

Times ``OnPolicyAlgorithm.learn`` and rl-zoo3's evaluations (``EvalCallback._on_step``), so that the
campaign can report the training speed without them, and writes the times to ``TIMING_JSON``.
Nothing else about the run changes.
"""

import atexit
import json
import sys
import time

from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_pgx.zoo.__main__ import main as zoo_main

TIMES = {"learn_s": 0.0, "eval_s": 0.0, "num_timesteps": 0, "n_evals": 0}


def _timed_learn(learn):
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return learn(self, *args, **kwargs)
        finally:
            TIMES["learn_s"] += time.perf_counter() - start
            TIMES["num_timesteps"] = int(self.num_timesteps)

    return wrapper


def _timed_eval_step(on_step):
    def wrapper(self):
        start = time.perf_counter()
        try:
            return on_step(self)
        finally:
            # _on_step runs every env step but evaluates only every eval_freq calls; all of it
            # is time not spent training, so all of it is subtracted.
            TIMES["eval_s"] += time.perf_counter() - start
            TIMES["n_evals"] = len(getattr(self, "evaluations_timesteps", []))

    return wrapper


def main() -> None:
    timing_path, argv = sys.argv[1], sys.argv[2:]
    OnPolicyAlgorithm.learn = _timed_learn(OnPolicyAlgorithm.learn)
    EvalCallback._on_step = _timed_eval_step(EvalCallback._on_step)

    def dump() -> None:
        with open(timing_path, "w") as f:
            json.dump(TIMES, f)

    atexit.register(dump)
    zoo_main(argv)


if __name__ == "__main__":
    main()
