"""Memory check: a long run must not grow the process.

Trains one algorithm (or all) on CartPole-v1 with 8 envs and compares the resident set size
after ``--warmup`` steps (buffers, replay store and allocator pools are full by then) with
the RSS at the end of ``--steps`` steps. Exits 1 if it grew by more than ``--tolerance-mib``.

    OMP_NUM_THREADS=1 python tests/conformance/memory_check.py --algo all --steps 1000000
"""

import argparse
import resource
import sys
from pathlib import Path

import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ALGORITHMS  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class RSSProbe(BaseCallback):
    def __init__(self, warmup: int):
        super().__init__()
        self.warmup = warmup
        self.at_warmup: float | None = None
        self.samples: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.at_warmup is None and self.num_timesteps >= self.warmup:
            self.at_warmup = rss_mib()
        if not self.samples or self.num_timesteps - self.samples[-1][0] >= self.warmup:
            self.samples.append((self.num_timesteps, rss_mib()))


def check(spec, steps: int, warmup: int, tolerance: float) -> bool:
    model = spec.make("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=0), n_steps=32)
    probe = RSSProbe(warmup)
    model.learn(steps, callback=probe)
    end = rss_mib()
    growth = end - probe.at_warmup
    trace = ", ".join(f"{t // 1000}k:{m:.0f}" for t, m in probe.samples)
    ok = growth <= tolerance
    print(
        f"{spec.name:20s} RSS at {warmup} steps {probe.at_warmup:7.1f} MiB, at {steps} steps {end:7.1f} MiB, "
        f"growth {growth:+6.1f} MiB ({'ok' if ok else 'GREW'}) [{trace}]",
        flush=True,
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="all", help="class name, or 'all'")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=50_000)
    parser.add_argument("--tolerance-mib", type=float, default=20.0)
    args = parser.parse_args()
    th.set_num_threads(1)
    specs = [s for s in ALGORITHMS if args.algo in ("all", s.name)]
    if not specs:
        parser.error(f"unknown algorithm {args.algo}")
    results = [check(spec, args.steps, args.warmup, args.tolerance_mib) for spec in specs]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
