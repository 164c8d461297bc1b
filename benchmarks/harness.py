"""The benchmark harness: the algorithm lists, one run record, one train-and-evaluate function, one
verdict rule and one markdown-table writer, shared by the campaign (:mod:`benchmarks.run`), its report
(:mod:`benchmarks.report`, :mod:`benchmarks.intervals`) and the side-by-side studies
(:mod:`benchmarks.studies`). What each benchmark is for and what it found: ``docs/benchmarks.md``.
"""

import csv
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from sb3_pgx.registry import ALGORITHMS, get

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
OURS = [algorithm.name for algorithm in ALGORITHMS]
BASELINES = ["a2c", "ppo", "trpo"]
ALL_ALGOS = OURS + BASELINES  # the order of every table and plot
BASELINE_OF = {algorithm.name: algorithm.baseline for algorithm in ALGORITHMS}
#: Bootstrap replications and seed of every interval.
REPS = 10_000
SEED = 0
#: The one verdict rule (:func:`verdict`), in words.
VERDICT = "ahead / behind when the 95% bootstrap intervals of the two means over seeds do not overlap, else tie"


def algo_class(name: str) -> type:
    """The class of an rl-zoo3 algorithm name: ours from the registry, the baselines from rl-zoo3."""
    if name in OURS:
        return get(name).cls
    from rl_zoo3.utils import ALGOS

    return ALGOS[name]


def threshold(env_id: str) -> float | None:
    """The return at which ``env_id`` counts as solved: gymnasium's ``reward_threshold`` (None: none)."""
    import gymnasium as gym

    return gym.spec(env_id).reward_threshold


# ----------------------------------------------------------------------------- one run
class Instrument(BaseCallback):
    """A study's own measurement during ``learn()``; :meth:`figures` join the run record."""

    #: seconds inside ``learn()`` that were not training (evaluations): left out of the FPS
    excluded_s = 0.0

    def _on_step(self) -> bool:
        return True

    def figures(self) -> dict:
        return {}


def make_env(env_id: str, n_envs: int, seed: int, normalize: bool = False, gamma: float = 0.99):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    return VecNormalize(env, gamma=gamma) if normalize else env


def make_eval_env(env_id: str, seed: int | None, vectorised: bool, normalize: bool, gamma: float):
    """A fresh evaluation env: ``make_env`` seeded with ``seed`` when ``vectorised`` (and normalised like
    the training env), else a ``Monitor`` whose first reset takes ``seed`` (None: unseeded)."""
    if vectorised:
        return make_env(env_id, 1, seed, normalize, gamma)
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(gym.make(env_id))
    if seed is not None:
        env.reset(seed=seed)
    return env


def train_and_evaluate(
    algo: str,
    env_id: str,
    seed: int,
    settings: dict,
    name: str | None = None,
    eval_episodes: int = 10,
    eval_seed: int | None = 10_000,
    eval_vectorised: bool = False,
    instruments: Callable[[object], Sequence[Instrument]] = lambda eval_env: [],
) -> dict:
    """Train ``algo`` on ``env_id`` from ``seed``, then evaluate its deterministic policy: the run record.

    ``settings`` holds the constructor's keyword arguments and ``timesteps``, ``n_envs`` and
    ``normalize`` (VecNormalize; the evaluation env then uses its statistics, frozen). The evaluation
    env (:func:`make_eval_env`, seeded with ``eval_seed + seed``) is made before training, so that
    ``instruments(eval_env)`` can evaluate during it. The record: env, algo (``name`` if given),
    seed, steps trained, mean and std of the final evaluation, mean return of the last 20 training
    episodes, training FPS (the instruments' evaluation time left out) and the instruments' figures.
    """
    kwargs = dict(settings)
    timesteps, n_envs, normalize = kwargs.pop("timesteps"), kwargs.pop("n_envs", 1), kwargs.pop("normalize", False)
    gamma = kwargs.get("gamma", 0.99)
    if kwargs.get("n_workers"):  # Ray workers build their own envs from the id; loopback only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        env = env_id
    else:
        env = make_env(env_id, n_envs, seed, normalize, gamma)
    model = algo_class(algo)("MlpPolicy", env, seed=seed, device="cpu", **kwargs)
    eval_env = make_eval_env(env_id, None if eval_seed is None else eval_seed + seed, eval_vectorised, normalize, gamma)
    tools = list(instruments(eval_env))
    start = time.perf_counter()
    model.learn(timesteps, callback=tools)
    train_s = time.perf_counter() - start - sum(tool.excluded_s for tool in tools)
    if normalize:
        eval_env.obs_rms, eval_env.training, eval_env.norm_reward = env.obs_rms, False, False
    from stable_baselines3.common.evaluation import evaluate_policy

    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True, warn=False)
    if kwargs.get("n_workers"):
        model.close()
    episodes = [info["r"] for info in list(model.ep_info_buffer)[-20:]]
    record = {
        "env": env_id, "algo": name or algo, "seed": seed, "timesteps": model.num_timesteps,
        "eval_mean": round(float(mean), 1), "eval_std": round(float(std), 1),
        "train_return": round(float(np.mean(episodes)), 1) if episodes else "", "fps": round(model.num_timesteps / train_s, 1),
    }  # fmt: skip
    for tool in tools:
        record.update(tool.figures())
    return record


def side_by_side(makers: dict, chunk: int, n_chunks: int, first: int, callbacks: dict | None = None, **learn_kwargs):
    """Train two models in alternating chunks of ``chunk`` steps, so that a change of machine load hits both.

    ``makers``: name -> function returning the model, called just before its first chunk. The first
    model starts when ``first`` is even, the second when it is odd, and the order alternates from chunk
    to chunk. Returns the wall-clock and CPU (process) seconds of each model's training, and the models.
    """
    names, models = list(makers), {}
    wall, cpu = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for index in range(n_chunks):
        for name in names if (first + index) % 2 == 0 else names[::-1]:
            if name not in models:
                models[name] = makers[name]()
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            callback = (callbacks or {}).get(name)
            models[name].learn(chunk, reset_num_timesteps=index == 0, callback=callback, **learn_kwargs)
            wall[name] += time.perf_counter() - start_wall
            cpu[name] += time.process_time() - start_cpu
    return wall, cpu, models


# ----------------------------------------------------------------------------- one verdict rule
def mean_interval(scores: Sequence[float]) -> tuple[float, float, float]:
    """Mean over seeds with its 95% percentile-bootstrap interval: ``(mean, low, high)``.

    On one env rliable's stratified bootstrap is the plain bootstrap over seeds; SciPy's
    vectorised one gives the same interval a hundred times faster.
    """
    from scipy.stats import bootstrap

    scores = np.asarray(scores, dtype=float)
    if len(scores) < 2:  # one seed: no interval
        return float(scores.mean()), math.nan, math.nan
    result = bootstrap((scores,), np.mean, n_resamples=REPS, method="percentile", rng=np.random.default_rng(SEED))
    interval = result.confidence_interval
    return float(scores.mean()), float(interval.low), float(interval.high)


def paired_difference(stem: str, first: str, second: str, key: str) -> tuple[float, float, float]:
    """``first - second`` in column ``key`` of ``benchmarks/results/<stem>.csv``, paired by seed (the same seed
    gives two variants the same envs and initial weights): the mean over seeds and its 95% bootstrap interval."""
    rows = read_csv(RESULTS / f"{stem}.csv")
    values = {name: {row["seed"]: float(row[key]) for row in rows if row["algo"] == name} for name in (first, second)}
    return mean_interval([values[first][seed] - values[second][seed] for seed in values[first] if seed in values[second]])


def verdict(ours: tuple[float, float, float], base: tuple[float, float, float]) -> str:
    """The one pass/fail rule: "ahead" / "behind" when the two ``(mean, low, high)`` intervals do not
    overlap, else "tie"."""
    if math.isnan(ours[1]) or math.isnan(base[1]):
        return "no interval (1 seed)"
    if ours[1] > base[2]:
        return "ahead"
    if ours[2] < base[1]:
        return "behind"
    return "tie"


# ----------------------------------------------------------------------------- tables and files
def table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    """A markdown table: the header, the rule and one line per row."""
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header), *(f"| {' | '.join(map(str, r))} |" for r in rows)]


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """One line per row; the header is every key in order of appearance (a missing one is left empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    with open(path) as file:
        return list(csv.DictReader(file))


def write_results(path: Path, title: str, intro: str, rows: Sequence[dict], summary: Sequence[dict], footer=()) -> list[str]:
    """``<path>.csv`` (``rows``, one line per run) and ``<path>.md``: ``title``, the command that made it,
    ``intro``, the table of ``summary`` (a dict per line, floats to 4 digits) and ``footer``."""
    write_csv(rows, path.with_suffix(".csv"))
    command = f"OMP_NUM_THREADS=1 python -m benchmarks.{Path(sys.argv[0]).stem} {' '.join(sys.argv[1:])}"
    body = [[f"{v:.4g}" if isinstance(v, float) else v for v in row.values()] for row in summary]
    lines = [f"# {title}", "", f"`{command}`", "", intro, "", *table(list(summary[0]), body), *footer]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return lines
