"""Side-by-side studies: ours against SB3's algorithms with the same settings, each a configuration of the
harness. ``python -m benchmarks.studies NAME --help`` lists a study's flags; what each is for, its
commands and its findings are in ``docs/benchmarks.md``.

Every study runs one run at a time with one torch thread, seeds ``--seed-offset`` onwards, and writes
``benchmarks/results/<out>.csv`` (one row per run) and ``<out>.md`` (its table and the command).
"""

import argparse
import ast
import importlib
import inspect
import math
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch as th
from rl_zoo3.utils import SimpleLinearSchedule

from benchmarks.harness import (
    OURS,
    RESULTS,
    VERDICT,
    Instrument,
    algo_class,
    make_env,
    mean_interval,
    read_csv,
    side_by_side,
    threshold,
    train_and_evaluate,
    verdict,
    write_results,
)
from sb3_pgx.registry import ALGORITHMS, get


# ----------------------------------------------------------------------------- train-and-evaluate studies
class Column(NamedTuple):
    """An extra table column: the figure ``key`` of a study's runs, reduced over seeds."""

    header: str
    key: str
    fmt: str = ".1f"
    reduce: Callable | None = statistics.fmean  # None: every seed's value
    ratio: bool = False  # also the ratio to the baseline's


@dataclass
class Study:
    """Every variant on every env and seed, one run at a time; a variant's settings are the env's shared
    settings (constructor arguments, ``timesteps``, ``n_envs``, ``normalize``) with its own on top."""

    title: str
    variants: dict[str, tuple[str, dict | Callable]]  # name -> (rl-zoo3 algorithm, own arguments or settings -> settings)
    envs: dict[str, dict]  # env -> shared settings; an env not listed takes the first one's
    baseline: str | None = None  # the variant the others are judged against
    default_algos: list[str] | None = None
    overrides: dict[tuple[str, str], dict] = field(default_factory=dict)  # (variant, env) -> settings
    seeds: int = 3
    eval_seed: int | None = 10_000  # evaluation env seed: eval_seed + seed (None: unseeded)
    eval_vectorised: bool = False
    eval_freq: int = 0  # periodic evaluations for the first step at the threshold (0: none)
    resume: bool = False  # skip the runs the CSV already holds
    columns: tuple[Column, ...] = ()
    instruments: Callable[[], list[Instrument]] = list  # the study's own measurements of each run
    pattern: Callable[[str], tuple[str, dict]] | None = None  # variant names beyond ``variants``

    def variant(self, name: str) -> tuple[str, dict | Callable]:
        if name in self.variants:
            return self.variants[name]
        if self.pattern is None:
            raise argparse.ArgumentTypeError(f"unknown variant {name!r}: expected one of {list(self.variants)}")
        return self.pattern(name)

    def settings(self, name: str, env: str, args) -> tuple[str, dict]:
        """The rl-zoo3 algorithm and settings of variant ``name`` on ``env`` (``--set``, ``--timesteps`` applied)."""
        algo, own = self.variant(name)
        shared = {**self.envs.get(env, next(iter(self.envs.values()))), **dict(args.set)}
        if args.timesteps:
            shared["timesteps"] = args.timesteps[args.envs.index(env) if len(args.timesteps) > 1 else 0]
        settings = own(shared) if callable(own) else {**shared, **own}
        return algo, {**settings, **self.overrides.get((name, env), {})}


class FirstSuccess(Instrument):
    """Evaluate every ``eval_freq`` steps; the first step at which the mean return reaches ``threshold``
    ends training unless ``stop`` is False."""

    def __init__(self, eval_env, eval_freq: int, episodes: int, threshold: float, stop: bool):
        super().__init__()
        self.eval_env, self.eval_freq, self.episodes = eval_env, eval_freq, episodes
        self.threshold, self.stop = threshold, stop
        self.next_eval, self.first_success, self.success_wall_s = eval_freq, None, None

    def _init_callback(self) -> None:
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        from stable_baselines3.common.evaluation import evaluate_policy

        self.next_eval += self.eval_freq
        start = time.perf_counter()
        mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True)
        self.excluded_s += time.perf_counter() - start
        if mean >= self.threshold and self.first_success is None:
            self.first_success = self.num_timesteps
            self.success_wall_s = time.perf_counter() - self.started - self.excluded_s
            return not self.stop
        return True

    def figures(self) -> dict:
        """``solved_at``: the first step at the threshold ("": never); ``steps_to_threshold``: that, or the budget;
        ``wall_s_to_threshold``: the training wall time until then, evaluations left out ("": never)."""
        solved_at = "" if self.first_success is None else self.first_success
        return {
            "solved_at": solved_at, "steps_to_threshold": self.model._total_timesteps if solved_at == "" else solved_at,
            "wall_s_to_threshold": "" if self.success_wall_s is None else round(self.success_wall_s, 1),
        }  # fmt: skip


class Staleness(Instrument):
    """Means over updates of the staleness figures ``train()`` logged, read before the next rollout.

    SB3 dumps the logger before ``train()``, so at the next ``on_rollout_start`` the logger still
    holds what ``train()`` recorded; ``_n_updates`` tells a new update from an old one.
    """

    KEYS = {"train/ess_replay_mean": "ess_replay_mean", "trust_region/ess": "ess_new_mean",
            "train/rho_truncated_fraction": "rho_truncated_fraction", "trust_region/approx_kl": "approx_kl_mean",
            "lag": "policy_lag_mean"}  # fmt: skip

    def _init_callback(self) -> None:
        self.values, self.seen_updates = {key: [] for key in self.KEYS}, 0

    def _on_rollout_start(self) -> None:
        if getattr(self.model, "_n_updates", 0) == self.seen_updates:
            return
        self.seen_updates = self.model._n_updates
        self.values["lag"].append(getattr(self.model, "rollout_policy_lag", 0))  # of the rollout just trained on
        for key in self.KEYS:
            if key in self.model.logger.name_to_value:
                self.values[key].append(float(self.model.logger.name_to_value[key]))

    def _on_training_end(self) -> None:
        self._on_rollout_start()

    def figures(self) -> dict:
        return {
            name: round(statistics.fmean(self.values[key]), 4) if self.values[key] else "" for key, name in self.KEYS.items()
        }


class UpdateTimer(Instrument):
    """Wall time of every ``train()`` call and of its actor part, until the critic's passes start: TRPO's
    first ``get(batch_size)`` minibatch, or ours' ``fit_critic`` (which indexes the batch without ``get``)."""

    def _init_callback(self) -> None:
        self.train_s, self.actor_s, state = [], [], {"start": 0.0, "critic": None}
        train, buffer_get = self.model.train, self.model.rollout_buffer.get

        def critic_starts():
            state["critic"] = state["critic"] or time.perf_counter()

        def get(batch_size=None):
            if batch_size is not None:
                critic_starts()
            return buffer_get(batch_size)

        if hasattr(self.model, "fit_critic"):
            fit_critic = self.model.fit_critic

            def timed_fit_critic(*args, **kwargs):
                critic_starts()
                return fit_critic(*args, **kwargs)

            self.model.fit_critic = timed_fit_critic

        def timed_train():
            state["start"], state["critic"] = time.perf_counter(), None
            train()
            end = time.perf_counter()
            self.train_s.append(end - state["start"])
            self.actor_s.append((state["critic"] or end) - state["start"])

        self.model.train, self.model.rollout_buffer.get = timed_train, get

    def figures(self) -> dict:
        times = {"train_ms": self.train_s, "actor_ms": self.actor_s}
        return {**{key: round(1000 * np.mean(values), 2) for key, values in times.items()}, "n_updates": len(self.train_s)}


def sgd_steps_like_epochs(settings: dict) -> dict:
    """MDPO: ``n_sgd_steps`` = ``n_epochs`` x minibatches per batch, as many gradient steps as the others."""
    minibatches = math.ceil(settings["n_envs"] * settings["n_steps"] / settings["batch_size"])
    return {**{k: v for k, v in settings.items() if k != "n_epochs"}, "n_sgd_steps": settings["n_epochs"] * minibatches}


def vtrace_variant(name: str) -> tuple[str, dict | Callable]:
    """``(vtrace|none)[_e<E>][_r<R>][_w<W>[_b<B>]][_nostats]``: VTraceA2C with or without its correction, E epochs
    on each rollout, R replayed rollouts, W asynchronous Ray workers sharing the env's ``n_envs`` (weights sent
    every B updates), without the post-update diagnostics pass."""
    pattern = r"(vtrace|none)(?:_e(\d+))?(?:_r(\d+))?(?:_w(\d+)(?:_b(\d+))?)?(_nostats)?"
    match = re.fullmatch(pattern, name)
    if match is None:
        raise argparse.ArgumentTypeError(f"unknown variant {name!r}: expected a2c or {pattern}")
    correction, epochs, replay, workers, broadcast, nostats = match.groups()
    kwargs = dict(n_epochs=int(epochs or 1), replay_rollouts=int(replay or 0), correction=correction)
    kwargs.update({"log_update_stats": False} if nostats else {})
    if workers is None:
        return "a2c_vtrace", kwargs

    def asynchronous(settings: dict) -> dict:
        layout = dict(n_workers=int(workers), envs_per_worker=settings["n_envs"] // int(workers), asynchronous=True)
        return {**settings, **kwargs, **layout, "broadcast_interval": int(broadcast or 1)}

    return "a2c_vtrace", asynchronous


def ours_against(baseline: str) -> dict[str, tuple[str, dict]]:
    """The baseline, then every one of ours judged against it, at the shared settings."""
    return {name: (name, {}) for name in [baseline] + [a.name for a in ALGORITHMS if a.baseline == baseline]}


STUDIES = {
    "vpg_vs_a2c": Study(
        "VanillaPG vs SB3 A2C", {"vpg": ("vpg", {}), "a2c": ("a2c", {})},
        {"CartPole-v1": dict(timesteps=200_000, n_envs=1, n_steps=256)}, baseline="a2c", eval_seed=None,
    ),
    "is_family_vs_ppo": Study(
        "Importance-sampled family vs SB3 PPO", {**ours_against("ppo"), "mdpo": ("mdpo", sgd_steps_like_epochs)},
        {  # rl-zoo3 2.9.2's ppo.yml batch shapes, constant learning rate
            "CartPole-v1": dict(timesteps=100_000, n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98,
                                gae_lambda=0.8, learning_rate=1e-3),
            # Acrobot without observation normalisation, Pendulum without gSDE: only the update differs.
            "Acrobot-v1": dict(timesteps=100_000, n_envs=16, n_steps=256, batch_size=64, n_epochs=4, gamma=0.99,
                               gae_lambda=0.94, learning_rate=3e-4),
            "Pendulum-v1": dict(timesteps=100_000, n_envs=4, n_steps=1024, batch_size=64, n_epochs=10, gamma=0.9,
                                gae_lambda=0.95, learning_rate=1e-3),
        },
        baseline="ppo", overrides={("mdpo", "Acrobot-v1"): dict(learning_rate=1e-3)},  # why: docs/benchmarks.md
    ),
    "npg_vs_trpo": Study(
        "NaturalPG vs sb3-contrib TRPO", {"npg": ("npg", {}), "trpo": ("trpo", {})},
        {  # rl-zoo3's TRPO settings (the NaturalPG defaults on CartPole)
            "CartPole-v1": dict(timesteps=100_000, n_envs=1, n_steps=1024, batch_size=256, gae_lambda=0.98,
                                learning_rate=1e-3, n_critic_updates=20, cg_max_steps=15, cg_damping=0.01, target_kl=0.02),
            "Acrobot-v1": dict(timesteps=100_000, n_envs=2, normalize=True, n_steps=1024, batch_size=128, gae_lambda=0.98,
                               learning_rate=1e-3, n_critic_updates=10, cg_max_steps=15, cg_damping=0.01, target_kl=0.01),
            "Pendulum-v1": dict(timesteps=100_000, n_envs=2, n_steps=1024, batch_size=128, gamma=0.9, gae_lambda=0.95,
                                learning_rate=1e-3, n_critic_updates=15, cg_max_steps=15, cg_damping=0.1, target_kl=0.01,
                                use_sde=True, sde_sample_freq=4),
        },
        baseline="trpo", eval_seed=1000, eval_vectorised=True, instruments=lambda: [UpdateTimer()],
        columns=(Column("train() ms", "train_ms", ratio=True), Column("actor update ms", "actor_ms", ratio=True)),
    ),
    "vtrace_sample_efficiency": Study(
        "VTraceA2C sample efficiency", {"a2c": ("a2c", {})},
        {"CartPole-v1": dict(timesteps=200_000, n_envs=8, n_steps=16, learning_rate=7e-4, ent_coef=0.0)},
        baseline="a2c", pattern=vtrace_variant, eval_vectorised=True, eval_freq=2_000,
        default_algos=["a2c", "vtrace_e1", "vtrace_e1_nostats", "vtrace_e4", "none_e4", "vtrace_r4", "none_r4"],
        instruments=lambda: [Staleness()],
        columns=(
            Column("median steps to threshold", "steps_to_threshold", ".0f", statistics.median, ratio=True),
            Column("steps per seed", "solved_at", ".0f", None), Column("ESS/N replayed", "ess_replay_mean", ".3f"),
            Column("ESS/N new", "ess_new_mean", ".3f"), Column("rho trunc.", "rho_truncated_fraction", ".3f"),
            Column("approx KL", "approx_kl_mean", ".3f"), Column("policy lag", "policy_lag_mean", ".2f"),
        ),
    ),
    "wall_time_lunarlander": Study(
        "Wall time to a return threshold on LunarLander-v3 (gymnasium's 200 unless --threshold): SB3 A2C "
        "in-process, VTraceA2C on asynchronous workers",
        {"a2c": ("a2c", {}), "vtrace_w2": vtrace_variant("vtrace_w2")},
        # rl-zoo3's A2C settings; the budget is the most either may take, the linear schedule runs over it.
        {"LunarLander-v3": dict(timesteps=1_000_000, n_envs=8, n_steps=5, gamma=0.995, ent_coef=1e-5,
                                learning_rate=SimpleLinearSchedule(8.3e-4))},
        # Two workers of 8 envs: each update trains on 8 columns of 5 steps, A2C's batch.
        baseline="a2c", overrides={("vtrace_w2", "LunarLander-v3"): dict(envs_per_worker=8)}, seeds=1,
        eval_freq=25_000, columns=(
            Column("wall s to threshold", "wall_s_to_threshold", ".0f", ratio=True),
            Column("steps to threshold", "solved_at", ".0f"),
            Column("policy lag", "policy_lag_mean", ".2f"),
        ), instruments=lambda: [Staleness()],
    ),
    "defaults_check": Study(
        "Good defaults: constructor defaults on CartPole-v1", {a: (a, {}) for a in [*OURS, "ppo"]},
        {"CartPole-v1": dict(timesteps=200_000)}, default_algos=OURS, seeds=1, resume=True,
    ),
}  # fmt: skip


def run_study(study: Study, args) -> list[dict]:
    """Every (env, seed, variant) not in the CSV yet (with ``--append`` or a resuming study), one at a time."""
    path = RESULTS / f"{args.out}.csv"
    rows = read_csv(path) if (study.resume or args.append) and path.exists() else []
    settings = {(env, name): study.settings(name, env, args) for env in args.envs for name in args.algos}
    intro = "Settings (constructor arguments and the harness's):\n\n" + "\n".join(
        f"- {env} / {name}: " + ", ".join(f"{k}={v}" for k, v in algo_settings[1].items())
        for (env, name), algo_settings in settings.items()
    )
    intro += f"\n\nDeterministic evaluation over {args.eval_episodes} episodes; one torch thread; verdict: {VERDICT}."
    for env in args.envs:
        goal = args.threshold if args.threshold is not None else threshold(env)
        for seed in range(args.seed_offset, args.seed_offset + args.seeds):
            for name in args.algos:
                algo, kwargs = settings[(env, name)]
                if any(is_run(row, env, name, seed, kwargs["timesteps"]) for row in rows):
                    print(f"skip {name} on {env} seed {seed} (done)")
                    continue

                def instruments(eval_env, goal=goal):
                    first = FirstSuccess(eval_env, args.eval_freq, args.periodic_episodes, goal, not args.no_early_stop)
                    return ([first] if args.eval_freq else []) + study.instruments()

                evaluation = dict(eval_seed=study.eval_seed, eval_vectorised=study.eval_vectorised, instruments=instruments)
                rows.append(train_and_evaluate(algo, env, seed, kwargs, name, args.eval_episodes, **evaluation))
                print(rows[-1], flush=True)
                # After every run: an interrupted study keeps what it measured.
                write_results(path, study.title, intro, rows, study_table(study, rows, args.envs[0]))
    if rows:
        write_results(path, study.title, intro, rows, study_table(study, rows, args.envs[0]))
    return rows


def is_run(row: dict, env: str, name: str, seed: int, timesteps: int) -> bool:
    """Whether a stored row is that run: the whole budget, or stopped early at the threshold (a row of an older
    CSV without env column counts for any env)."""
    same = (row.get("env") or env, row["algo"], int(row["seed"])) == (env, name, seed)
    return same and (int(float(row["timesteps"])) >= timesteps or row.get("solved_at", "") != "")


def study_table(study: Study, rows: list[dict], default_env: str) -> list[dict]:
    """Per env and variant: mean +- std over seeds, per seed, solved, FPS, the verdict against the baseline
    and the study's own columns (ratio to the baseline's where asked)."""
    base, summary = study.baseline, []

    def values(runs, key):
        return [float(r[key]) for r in runs if r.get(key, "") != ""]

    for env in dict.fromkeys(r.get("env") or default_env for r in rows):
        mine = [r for r in rows if (r.get("env") or default_env) == env]
        goal, base_runs = threshold(env), [r for r in mine if r["algo"] == base]
        known = list(study.variants)  # their order, then the pattern's variants in the order they ran
        for algo in sorted(dict.fromkeys(r["algo"] for r in mine), key=lambda a: known.index(a) if a in known else len(known)):
            runs = sorted((r for r in mine if r["algo"] == algo), key=lambda r: int(r["seed"]))
            evals, fps, train = values(runs, "eval_mean"), values(runs, "fps"), values(runs, "train_return")
            row = {
                "env": env, "algo": algo, "seeds": len(runs), "timesteps": runs[0]["timesteps"],
                "eval return (mean +- std over seeds)": f"{np.mean(evals):.1f} +- {np.std(evals):.1f}",
                "eval return per seed": ", ".join(f"{v:.1f}" for v in evals),
                "solved": "-" if goal is None else f"{sum(v >= goal for v in evals)}/{len(runs)}",
                "train return": f"{np.mean(train):.1f}" if train else "-", "FPS (mean)": f"{np.mean(fps):.0f}",
            }  # fmt: skip
            if base:
                row[f"FPS / {base}"] = f"{np.mean(fps) / np.mean(values(base_runs, 'fps')):.2f}" if base_runs else "-"
                judged = base_runs and algo != base
                row[f"vs {base}"] = (
                    verdict(mean_interval(evals), mean_interval(values(base_runs, "eval_mean"))) if judged else "-"
                )
            for column in study.columns:
                own, theirs = values(runs, column.key), values(base_runs, column.key)
                if column.reduce is None:  # every seed's value
                    row[column.header] = ", ".join(
                        format(float(r[column.key]), column.fmt) if r.get(column.key, "") != "" else "-" for r in runs
                    )
                else:
                    ratio = f" ({column.reduce(own) / column.reduce(theirs):.2f}x)" if column.ratio and own and theirs else ""
                    row[column.header] = format(column.reduce(own), column.fmt) + ratio if own else "-"
            summary.append(row)
    return summary


# ----------------------------------------------------------------------------- timing studies
#: The shape both algorithms of an FPS pair share, by baseline (VanillaPG: its own): n_envs, settings,
#: steps per chunk, chunks per repeat.
FPS_SHAPES = {
    "a2c": (8, dict(n_steps=5), 2000, 8),  # A2C's rl-zoo3 shape
    "ppo": (1, dict(n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4, gae_lambda=0.95), 2048, 3),
    "trpo": (1, dict(n_steps=2048, batch_size=128, n_critic_updates=10, cg_max_steps=15, cg_damping=0.1, target_kl=0.01,
                     gae_lambda=0.95), 2048, 4),
    "vpg": (1, dict(n_steps=256), 2048, 8),
}  # fmt: skip
#: Pairs whose side of ours departs from the shared settings, so that both do the same work.
FPS_OURS = {
    "vpg": ("vpg", dict(n_critic_updates=1, batch_size=None)),  # one critic pass on the whole rollout
    "ispg": ("ispg", dict(min_ess=None)),  # no ESS early stop
    "a2c_vtrace": ("a2c_vtrace", dict(n_epochs=1)),
    "a2c_vtrace_nostats": ("a2c_vtrace", dict(n_epochs=1, log_update_stats=False)),  # no post-update figures
}
FPS_PAIRS = [key for a in ALGORITHMS for key in (a.name, f"{a.name}_nostats") if key == a.name or key in FPS_OURS]


#: Another checkout's ``sb3_pgx`` (``fps_table --code PATH``), whose classes ours are then taken from, by name.
OTHER_CHECKOUT = {}


def fps_pair(key: str) -> tuple[type, type, int, dict, dict, int, int]:
    """Ours' and the counterpart's class, n_envs, ours' and theirs' settings, steps per chunk, chunks per repeat."""
    ours, own = FPS_OURS.get(key, (key, {}))
    baseline = get(ours).baseline
    n_envs, shared, chunk, n_chunks = FPS_SHAPES.get(ours, FPS_SHAPES[baseline])
    cls = algo_class(ours)
    cls = getattr(OTHER_CHECKOUT["sb3_pgx"], cls.__name__) if OTHER_CHECKOUT else cls
    return cls, algo_class(baseline), n_envs, {**shared, **own}, shared, chunk, n_chunks


def fps_label(key: str) -> str:
    ours, theirs, _, kwargs, *_ = fps_pair(key)
    return f"{ours.__name__}{'' if kwargs.get('log_update_stats', True) else ' (log_update_stats=False)'} vs {theirs.__name__}"


def fps_model(key: str, side: str, seed: int, device: str = "cpu"):
    """Ours (``side="ours"``) or the counterpart (``"theirs"``) of FPS pair ``key`` on CartPole-v1."""
    ours, theirs, n_envs, ours_kwargs, theirs_kwargs, *_ = fps_pair(key)
    cls, kwargs = (ours, ours_kwargs) if side == "ours" else (theirs, theirs_kwargs)
    return cls("MlpPolicy", make_env("CartPole-v1", n_envs, seed), seed=seed, device=device, **kwargs)


def run_pair(key: str, repeat: int, seed: int, device: str = "cpu") -> dict:
    """Both algorithms of FPS pair ``key`` with the same seed, side by side (ours first on even repeats)."""
    _, theirs, *_, chunk, n_chunks = fps_pair(key)
    # The same logging for both: the counterpart's default log_interval.
    log_interval = inspect.signature(theirs.learn).parameters["log_interval"].default
    makers = {side: lambda side=side: fps_model(key, side, seed, device) for side in ("ours", "theirs")}
    wall, cpu, _ = side_by_side(makers, chunk, n_chunks, repeat, log_interval=log_interval)
    timesteps = chunk * n_chunks
    return {
        "pair": fps_label(key), "repeat": repeat, "seed": seed, "first": "ours" if repeat % 2 == 0 else "theirs",
        "timesteps": timesteps, "ours_fps": timesteps / wall["ours"], "theirs_fps": timesteps / wall["theirs"],
        "fps_ratio": wall["theirs"] / wall["ours"], "ours_cpu_s": cpu["ours"], "theirs_cpu_s": cpu["theirs"],
        "cpu_ratio": cpu["theirs"] / cpu["ours"],
    }  # fmt: skip


def fps_table(args) -> list[str]:
    """FPS of each pair, ours / theirs, medians over repeats (repeat i: seed offset + i)."""
    if args.code:  # measure another checkout (e.g. the code before a change): git worktree add PATH COMMIT
        sys.path.insert(0, args.code)
        for module in [m for m in sys.modules if m.split(".")[0] == "sb3_pgx"]:
            del sys.modules[module]
        OTHER_CHECKOUT["sb3_pgx"] = importlib.import_module("sb3_pgx")
        print(f"sb3_pgx from {OTHER_CHECKOUT['sb3_pgx'].__file__}", flush=True)
    rows = []
    for repeat in range(args.seeds):
        for key in args.algos:
            rows.append(run_pair(key, repeat, args.seed_offset + repeat))
            print(rows[-1], flush=True)
    summary = []
    for pair in dict.fromkeys(row["pair"] for row in rows):
        mine = [row for row in rows if row["pair"] == pair]
        ratios = [row["fps_ratio"] for row in mine]
        summary.append({
            "pair": pair, "timesteps per repeat": mine[0]["timesteps"], "repeats": len(mine),
            "ours FPS (median)": f"{statistics.median(r['ours_fps'] for r in mine):.0f}",
            "theirs FPS (median)": f"{statistics.median(r['theirs_fps'] for r in mine):.0f}",
            "FPS ratio (median)": f"{statistics.median(ratios):.2f}",
            "FPS ratio (min-max)": f"{min(ratios):.2f}-{max(ratios):.2f}",
            "CPU-time ratio (median)": f"{statistics.median(r['cpu_ratio'] for r in mine):.2f}",
        })  # fmt: skip
    import stable_baselines3

    intro = (
        f"CartPole-v1, torch threads: 1, device cpu; Python {platform.python_version()}, torch {th.__version__}, "
        f"stable-baselines3 {stable_baselines3.__version__}. Ratios are ours / theirs (> 1: ours is faster), "
        "medians over repeats; in each repeat both train side by side with the same seed, in alternating chunks."
    )
    return write_results(RESULTS / args.out, "FPS of each sb3_pgx algorithm against its SB3 counterpart", intro, rows, summary)


#: Algorithms the monitor-overhead study measures, each at its library's defaults.
MONITORED = {
    "ppo": "Stock SB3 PPO (default hyperparameters: n_steps 2048, batch 64, 10 epochs) on CartPole-v1",
    "maskable_ppo": "sb3-contrib MaskablePPO (default hyperparameters: n_steps 2048, batch 64, 10 epochs) on "
    "InvalidActionEnvDiscrete(dim=10, n_invalid_actions=5), 4 envs",
    "recurrent_ppo": "sb3-contrib RecurrentPPO (MlpLstmPolicy, default hyperparameters: n_steps 128, batch 128, 10 epochs) "
    "on CartPole-v1",
}


def monitored_model(algo: str, seed: int):
    from sb3_contrib import MaskablePPO, RecurrentPPO
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    if algo == "maskable_ppo":
        env = make_vec_env(lambda: InvalidActionEnvDiscrete(dim=10, n_invalid_actions=5), n_envs=4, seed=seed)
        return MaskablePPO("MlpPolicy", env, seed=seed, device="cpu")
    if algo == "recurrent_ppo":
        return RecurrentPPO("MlpLstmPolicy", "CartPole-v1", seed=seed, device="cpu")
    return PPO("MlpPolicy", "CartPole-v1", seed=seed, device="cpu")


def monitor_overhead(args) -> list[str]:
    """Cost of the trust-region monitor: each repeat trains the algorithm twice with the same seed, plain and
    with ``TrustRegionMonitorCallback`` (all figures, exact KL; its hooks timed), the order alternating."""
    from sb3_pgx import TrustRegionMonitorCallback

    class TimedMonitor(TrustRegionMonitorCallback):
        hook_seconds = 0.0

        def _on_rollout_end(self) -> None:
            start = time.perf_counter()
            super()._on_rollout_end()
            self.hook_seconds += time.perf_counter() - start

        def _measure(self) -> None:
            start = time.perf_counter()
            super()._measure()
            self.hook_seconds += time.perf_counter() - start

    lines = []
    timesteps = args.timesteps[0] if args.timesteps else 20_000
    for algo in args.algos:
        rows = []
        for pair in range(args.seeds):
            seed, monitor = args.seed_offset + pair, TimedMonitor()
            makers = {side: lambda seed=seed, algo=algo: monitored_model(algo, seed) for side in ("plain", "monitor")}
            wall, cpu, _ = side_by_side(makers, timesteps, 1, pair, callbacks={"monitor": monitor})
            rows.append({
                "pair": pair, "seed": seed, "first": "monitor" if pair % 2 else "plain",
                "plain_wall_s": wall["plain"], "monitor_wall_s": wall["monitor"],
                "wall_ratio": wall["monitor"] / wall["plain"], "plain_cpu_s": cpu["plain"], "monitor_cpu_s": cpu["monitor"],
                "cpu_ratio": cpu["monitor"] / cpu["plain"],
                "monitor_hook_s": monitor.hook_seconds, "hook_share": monitor.hook_seconds / wall["monitor"],
                "updates": len(monitor.history),
            })  # fmt: skip
            print(rows[-1], flush=True)
        median = {key: statistics.median(row[key] for row in rows) for key in ("wall_ratio", "cpu_ratio", "hook_share")}
        intro = (
            f"{MONITORED[algo]}, {timesteps} steps per run, {args.seeds} pairs with the same seed, order alternating; "
            f"TrustRegionMonitorCallback with all figures and exact KL. torch threads: 1. "
            f"Python {platform.python_version()}, torch {th.__version__}."
        )
        footer = [
            "",
            f"**Median wall-time ratio (monitor / plain): {median['wall_ratio']:.3f}** "
            f"({100 * (median['wall_ratio'] - 1):+.1f}%); median CPU-time ratio {median['cpu_ratio']:.3f}; "
            f"median share of the monitored run spent in the monitor's hooks {100 * median['hook_share']:.2f}%.",
        ]
        stem = RESULTS / (args.out if algo == "ppo" else f"{args.out}_{algo}")
        lines += write_results(stem, f"Trust-region monitor overhead: {algo}", intro, rows, rows, footer)
    return lines


#: Collection layouts of the workers study, 8 environments in all:
#: name -> (n_workers, envs per worker or vec env, vec_env_cls name, asynchronous)
LAYOUTS = {
    "DummyVecEnv": (0, 8, "DummyVecEnv", False), "SubprocVecEnv": (0, 8, "SubprocVecEnv", False),
    "1 worker x 8": (1, 8, None, False), "2 workers x 4": (2, 4, None, False),
    "1 worker x 8, async": (1, 8, None, True), "2 workers x 4, async": (2, 4, None, True),
}  # fmt: skip
WORKER_ENVS = ("CartPole-v1", "LunarLander-v3")


class CollectionTimer(Instrument):
    """Wall seconds spent collecting (from each rollout's start to its end), the rest being ``train()``;
    the policy lag of each rollout."""

    def _init_callback(self) -> None:
        self.seconds, self.start, self.lags = 0.0, 0.0, []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        self.start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.seconds += time.perf_counter() - self.start
        self.lags.append(self.model.rollout_policy_lag)


def workers_throughput(args) -> list[str]:
    """Environment steps/s of rollout workers (``n_workers``; asynchronous for the algorithms that correct for
    policy lag) against in-process collection (DummyVecEnv, SubprocVecEnv), 8 environments in all, each
    algorithm at its defaults but ``n_steps=256``. With ``--rllib-python``, RLlib's IMPALA on the same
    machine, with as many env runners and envs, run by that interpreter (its own venv) after ours."""
    import json
    import os
    import subprocess

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, before Ray starts
    import ray
    from stable_baselines3.common import vec_env
    from stable_baselines3.common.env_util import make_vec_env

    ray.init(include_dashboard=False, log_to_driver=False)
    timesteps, rows = (args.timesteps[0] if args.timesteps else 16_384), []
    for repeat in range(args.seeds):
        seed = args.seed_offset + repeat
        for env_id in WORKER_ENVS:
            for algo in args.algos:
                for layout, (n_workers, n_envs, vec_cls, asynchronous) in LAYOUTS.items():
                    if asynchronous and not algo_class(algo).corrects_policy_lag:
                        continue
                    settings = dict(n_steps=256, seed=seed, device="cpu")
                    if n_workers:
                        workers = dict(n_workers=n_workers, envs_per_worker=n_envs, asynchronous=asynchronous)
                        env, settings = env_id, {**settings, **workers}
                    else:
                        env = make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=getattr(vec_env, vec_cls))
                    model = algo_class(algo)("MlpPolicy", env, **settings)
                    model.learn(256 * 8)  # warm-up: workers started, first rollout and update done
                    timer = CollectionTimer()
                    start = time.perf_counter()
                    model.learn(timesteps, reset_num_timesteps=False, callback=timer)
                    wall = time.perf_counter() - start
                    model.close() if n_workers else model.env.close()
                    rows.append({
                        "env": env_id, "algo": algo, "layout": layout, "seed": seed, "timesteps": timesteps,
                        "fps": timesteps / wall, "collection_fps": timesteps / timer.seconds,
                        "collection_share": timer.seconds / wall, "lag_mean": statistics.mean(timer.lags),
                    })  # fmt: skip
                    print(rows[-1], flush=True)
    ray.shutdown()
    summary = []
    for env_id, algo in dict.fromkeys((row["env"], row["algo"]) for row in rows):
        mine = [row for row in rows if (row["env"], row["algo"]) == (env_id, algo)]

        def median(key, layout, runs=mine):
            return statistics.median(row[key] for row in runs if row["layout"] == layout)

        def ratio(key, layout):
            return f"{median(key, layout) / median(key, 'DummyVecEnv'):.2f}"

        for layout in dict.fromkeys(row["layout"] for row in mine):
            summary.append({
                "env": env_id, "algo": algo, "layout": layout, "steps/s (training)": f"{median('fps', layout):.0f}",
                "training / DummyVecEnv's": ratio("fps", layout),
                "steps/s (collection)": f"{median('collection_fps', layout):.0f}",
                "collection / DummyVecEnv's": ratio("collection_fps", layout),
                "share of wall time collecting": f"{median('collection_share', layout):.2f}",
                "policy lag (mean)": f"{median('lag_mean', layout):.2f}",
            })  # fmt: skip
    footer = [""] if args.rllib_python else []
    if args.rllib_python:
        for n_workers, n_envs, _, _ in (LAYOUTS["1 worker x 8"], LAYOUTS["2 workers x 4"]):
            command = [args.rllib_python, str(Path(__file__).parent / "rllib_impala.py"), "--env-runners", str(n_workers),
                       "--envs-per-runner", str(n_envs), "--seconds", "60"]  # fmt: skip
            report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            rows.append({"env": report["env"], "algo": "rllib_impala", "layout": f"{n_workers} x {n_envs}", **report})
            footer.append(f"- RLlib {report['rllib_version']} IMPALA, {n_workers} env runner(s) x {n_envs} envs on "
                          f"CartPole-v1: {report['sampled_per_s']:.0f} env steps/s sampled, "
                          f"{report['trained_per_s'] or float('nan'):.0f} trained.")  # fmt: skip
    intro = (
        f"{os.cpu_count()} cores, torch threads 1, {timesteps} steps per run after a warm-up rollout, medians over "
        f"{args.seeds} seed(s). Collection: wall time from each rollout's start to its end (workers: weights out, "
        "rollouts back, buffer filled; asynchronous: the wait for the first rollout ready); training: the whole learn()."
    )
    return write_results(RESULTS / args.out, "Rollout workers: throughput", intro, rows, summary, footer)


#: name -> (function, --algos choices, default --algos, default --seeds)
TIMING = {
    "fps_table": (fps_table, FPS_PAIRS, FPS_PAIRS, 5),
    "monitor_overhead": (monitor_overhead, list(MONITORED), ["ppo"], 3),
    "workers_throughput": (workers_throughput, OURS, ["mdpo", "ppo_kl", "a2c_vtrace"], 1),
}


# ----------------------------------------------------------------------------- the command line
def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE a Python literal (``3e-3``, ``None``, ``True``) or else a string."""
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = parser.add_subparsers(dest="study", required=True)
    for name in [*STUDIES, *TIMING]:
        study = STUDIES.get(name)
        sub = names.add_parser(name, description=(study.title if study else TIMING[name][0].__doc__))
        if study:
            choices, algos, seeds = None if study.pattern else list(study.variants), study.default_algos, study.seeds
        else:
            _, choices, algos, seeds = TIMING[name]
        sub.add_argument("--algos", nargs="+", default=algos or list(study.variants), choices=choices, help="variants (pairs)")
        sub.add_argument("--seeds", type=int, default=seeds, help="seeds (repeats): seed-offset, seed-offset + 1, ...")
        sub.add_argument("--seed-offset", type=int, default=0)
        sub.add_argument("--out", default=name, help="stem of the result files under benchmarks/results/")
        sub.add_argument("--timesteps", type=int, nargs="+", help="budget: one, or one per env (default: the study's)")
        if name == "workers_throughput":
            sub.add_argument("--rllib-python", help="an interpreter with ray[rllib]: add RLlib IMPALA's throughput")
        if name == "fps_table":
            sub.add_argument("--code", help="measure the sb3_pgx of another checkout (a git worktree) at this path")
        if study:
            sub.add_argument("--envs", nargs="+", default=list(study.envs)[:1] if study.pattern else list(study.envs))
            sub.add_argument("--eval-episodes", type=int, default=10, help="episodes of the final evaluation")
            sub.add_argument("--set", nargs="+", type=key_value, default=[], metavar="KEY=VALUE", help="shared settings")
            sub.add_argument("--append", action="store_true", help="keep the CSV's runs and skip those it holds")
            sub.add_argument("--eval-freq", type=int, default=study.eval_freq, help="periodic evaluations (0: none)")
            sub.add_argument("--periodic-episodes", type=int, default=5, help="episodes of each periodic evaluation")
            sub.add_argument("--threshold", type=float, help="return of the first success (default: gymnasium's)")
            sub.add_argument("--no-early-stop", action="store_true", help="train the whole budget past the threshold")
    args = parser.parse_args(argv)
    if args.study in STUDIES:
        for variant in args.algos:
            STUDIES[args.study].variant(variant)  # raises on an unknown name
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    th.set_num_threads(1)  # one core per run: steadier timings on a shared machine
    if args.study in STUDIES:
        run_study(STUDIES[args.study], args)
        print((RESULTS / f"{args.out}.md").read_text())
    else:
        print("\n".join(TIMING[args.study][0](args)))


if __name__ == "__main__":
    main()
