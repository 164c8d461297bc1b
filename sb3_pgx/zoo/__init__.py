"""rl-zoo3 glue: our algorithms under their zoo names, with their hyperparameter files and samplers.

rl-zoo3 builds each script's ``--algo`` choices from ``rl_zoo3.utils.ALGOS`` before it parses
the command line, so ``--gym-packages`` comes too late to add an algorithm. :func:`register`
puts those of :data:`sb3_pgx.registry.ALGORITHMS` into that dict (and into the Optuna sampler /
converter tables used by ``-optimize``), and puts :class:`~sb3_pgx.zoo.experiment.WorkersExperimentManager`
in place of rl-zoo3's ``ExperimentManager``, so that yml files and ``--hyperparams`` can ask for rollout
workers; ``python -m sb3_pgx.zoo <script> ...`` registers and then runs the rl-zoo3 script.
"""

from pathlib import Path

from sb3_pgx.registry import ALGORITHMS


def hyperparams_file(name: str) -> Path:
    """Our ``hyperparams/<name>.yml``: inside the installed package, or at the top of a source checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    for folder in (package_dir / "hyperparams", package_dir.parent / "hyperparams"):
        path = folder / f"{name}.yml"
        if path.is_file():
            return path
    raise FileNotFoundError(f"No hyperparameter file for algo {name!r} (looked for hyperparams/{name}.yml)")


def register() -> None:
    """Make rl-zoo3 know our algorithms (idempotent)."""
    from rl_zoo3 import exp_manager, hyperparams_opt, utils

    from sb3_pgx.zoo.experiment import WorkersExperimentManager

    exp_manager.ExperimentManager = WorkersExperimentManager  # rl_zoo3.train imports it from there when it runs

    for algorithm in ALGORITHMS:
        utils.ALGOS[algorithm.name] = algorithm.cls
        hyperparams_opt.HYPERPARAMS_SAMPLER[algorithm.name] = algorithm.sampler
        hyperparams_opt.HYPERPARAMS_CONVERTER[algorithm.name] = hyperparams_opt.convert_onpolicy_params
