"""Distributed hyperparameter tuning: several rl-zoo3 ``-optimize`` workers sharing one Optuna study.

Starts ``--workers`` processes of ``python -m sb3_pgx.zoo train -optimize --storage URL --study-name NAME``
(our samplers come from the registry through :mod:`sb3_pgx.zoo`), waits for them, and reports which
worker ran which trial (user attribute ``worker``); exits non-zero unless every worker completed a
trial. ``--trial-seeds N`` scores each trial by the mean over N seeds. ``python -m benchmarks.tune worker
TAG [--trial-seeds N] <zoo train arguments>`` is a worker's entry point. How to use it, on one machine
or several, and a study we ran: ``docs/tuning.md``.
"""

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def mean_over_seeds(objective: Callable[[Any, Any], float], n_seeds: int) -> Callable[[Any, Any], float]:
    """Wrap rl-zoo3's ``ExperimentManager.objective`` to score a trial by the mean over ``n_seeds`` runs.

    Run i trains with the manager's seed + i (the seed of its environments; the networks draw
    from the global generator, which moves on between runs). The configuration is sampled once:
    Optuna returns the stored value when a trial asks for a parameter again. A pruned run
    (``TrialPruned``) ends the trial. The per-seed scores go to the user attribute ``seed_values``.
    """

    def objective_over_seeds(manager, trial) -> float:
        base_seed = manager.seed
        values = []
        try:
            for i in range(n_seeds):
                manager.seed = base_seed + i
                values.append(float(objective(manager, trial)))
        finally:
            manager.seed = base_seed
        trial.set_user_attr("seed_values", values)
        return sum(values) / len(values)

    return objective_over_seeds


def worker(tag: str, zoo_args: list[str], trial_seeds: int = 1) -> None:
    """Run ``python -m sb3_pgx.zoo train <zoo_args>``, tagging every Optuna trial with ``tag``."""
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_pgx.zoo.__main__ import main as zoo_main

    objective = ExperimentManager.objective if trial_seeds == 1 else mean_over_seeds(ExperimentManager.objective, trial_seeds)

    def tagged_objective(self, trial):
        trial.set_user_attr("worker", tag)
        trial.set_user_attr("pid", os.getpid())
        return objective(self, trial)

    ExperimentManager.objective = tagged_objective
    zoo_main(["train", *zoo_args])


def worker_command(args, tag: str, seed: int) -> list[str]:
    return [
        sys.executable, "-m", "benchmarks.tune", "worker", tag, "--trial-seeds", str(args.trial_seeds),
        "--algo", args.algo, "--env", args.env, "-optimize",
        "--storage", args.storage, "--study-name", args.study_name,
        "--n-trials", str(args.trials_per_worker), "--n-timesteps", str(args.n_timesteps),
        "--n-evaluations", str(args.n_evaluations), "--eval-episodes", str(args.eval_episodes),
        "--sampler", args.sampler, "--pruner", args.pruner, "--n-startup-trials", str(args.n_startup_trials),
        "--no-optim-plots", "--num-threads", "1", "--seed", str(seed), "-f", str(Path(args.log_dir) / tag),
        "--verbose", "0",
    ]  # fmt: skip


def launch(args) -> int:
    import optuna

    # Create the study once, before the workers start, so that they all load it (two workers
    # creating it at the same moment can race in create_study).
    optuna.create_study(storage=args.storage, study_name=args.study_name, direction="maximize", load_if_exists=True)
    env_vars = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    procs = []
    start = time.perf_counter()
    for i in range(args.workers):
        tag = f"worker{i}"
        out = open(Path(args.log_dir) / f"{tag}.log", "w")  # noqa: SIM115 (closed after the worker ends)
        cmd = worker_command(args, tag, args.seed + i * args.trial_seeds)  # no seed shared by two workers
        print(f"start {tag}: {' '.join(cmd[1:])}", flush=True)
        procs.append((tag, subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env_vars), out))
    failed = []
    for tag, proc, out in procs:
        code = proc.wait()
        out.close()
        if code != 0:
            failed.append(tag)
            print(f"{tag} exited with {code}; last lines of {out.name}:", file=sys.stderr)
            print("\n".join(Path(out.name).read_text().splitlines()[-15:]), file=sys.stderr)
    study = optuna.load_study(storage=args.storage, study_name=args.study_name)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    per_worker = Counter(t.user_attrs.get("worker", "untagged") for t in done)
    print(f"study {args.study_name!r} in {args.storage}: {len(trials)} trials, {len(done)} finished, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    for t in trials:
        print(f"  trial {t.number}: {t.state.name}, value {t.value}, worker {t.user_attrs.get('worker')} "
              f"(pid {t.user_attrs.get('pid')}), params {t.params}"
              + (f", per seed {t.user_attrs['seed_values']}" if "seed_values" in t.user_attrs else ""))  # fmt: skip
    with contextlib.suppress(ValueError):  # no finished trial: no best
        print(f"best: trial {study.best_trial.number}, value {study.best_value}, params {study.best_params}")
    shared = all(per_worker.get(f"worker{i}", 0) > 0 for i in range(args.workers))
    print(f"finished trials per worker: {dict(per_worker)}; study shared by all workers: {shared}")
    return 0 if shared and not failed else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "worker":
        tag, rest = argv[1], argv[2:]
        trial_seeds = 1
        if rest[:1] == ["--trial-seeds"]:
            trial_seeds, rest = int(rest[1]), rest[2:]
        worker(tag, rest, trial_seeds)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="vpg")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--n-timesteps", type=int, default=2000, help="training budget of each trial")
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--n-evaluations", type=int, default=1, help="evaluations per trial (the pruner acts on them)")
    parser.add_argument("--storage", default="sqlite:////tmp/sb3_pgx_study.db", help="Optuna RDB URL (sqlite:///..., postgresql://...)")
    parser.add_argument("--study-name", default=None, help="default: <algo>-<env>")
    parser.add_argument("--sampler", default="tpe", choices=["random", "tpe", "auto"])
    parser.add_argument("--pruner", default="median", choices=["halving", "median", "none"])
    parser.add_argument("--n-startup-trials", type=int, default=10)
    parser.add_argument("--trial-seeds", type=int, default=1, help="seeds per trial; the trial's value is their mean")
    parser.add_argument("--seed", type=int, default=0, help="worker i uses seeds seed + i * trial_seeds onwards")
    parser.add_argument("--log-dir", default="/tmp/sb3_pgx_tune", help="rl-zoo3 logs and worker output")
    args = parser.parse_args(argv)
    args.study_name = args.study_name or f"{args.algo}-{args.env}"
    if args.trial_seeds < 1:
        parser.error(f"--trial-seeds must be >= 1, got {args.trial_seeds}")
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
