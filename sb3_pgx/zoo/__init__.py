"""rl-zoo3 glue: our algorithms under their zoo names, with their hyperparameter files and samplers.

rl-zoo3 builds each script's ``--algo`` choices from ``rl_zoo3.utils.ALGOS`` before it parses
the command line, so ``--gym-packages`` comes too late to add an algorithm. :func:`register`
puts ours into that dict (and into the Optuna sampler / converter tables used by
``-optimize``); ``python -m sb3_pgx.zoo <script> ...`` registers and then runs the rl-zoo3
script. A new algorithm is one line in :data:`ZOO_ALGOS`.
"""

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any, NamedTuple

from stable_baselines3.common.base_class import BaseAlgorithm


class ZooEntry(NamedTuple):
    """An algorithm as rl-zoo3 sees it: its class and its Optuna sampler (both as import paths)."""

    algorithm: str
    sampler: str


# zoo name -> (class, sampler); names follow rl-zoo3's lower-case style.
ZOO_ALGOS: dict[str, ZooEntry] = {
    "vpg": ZooEntry("sb3_pgx.vpg:VanillaPG", "sb3_pgx.zoo.samplers:sample_vpg_params"),
    "ispg": ZooEntry("sb3_pgx.ispg:ImportanceSampledPG", "sb3_pgx.zoo.samplers:sample_ispg_params"),
    "ppo_kl": ZooEntry("sb3_pgx.ppo_kl:AdaptiveKLPPO", "sb3_pgx.zoo.samplers:sample_ppo_kl_params"),
    "mdpo": ZooEntry("sb3_pgx.mdpo:MDPO", "sb3_pgx.zoo.samplers:sample_mdpo_params"),
    "a2c_vtrace": ZooEntry("sb3_pgx.a2c_vtrace:VTraceA2C", "sb3_pgx.zoo.samplers:sample_a2c_vtrace_params"),
    "npg": ZooEntry("sb3_pgx.npg:NaturalPG", "sb3_pgx.zoo.samplers:sample_npg_params"),
}


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(import_module(module), name)


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """The class registered under the zoo name ``name``."""
    return _load(ZOO_ALGOS[name].algorithm)


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
    from rl_zoo3 import hyperparams_opt, utils

    for name, entry in ZOO_ALGOS.items():
        utils.ALGOS[name] = algorithm_class(name)
        sampler: Callable = _load(entry.sampler)
        hyperparams_opt.HYPERPARAMS_SAMPLER[name] = sampler
        hyperparams_opt.HYPERPARAMS_CONVERTER[name] = hyperparams_opt.convert_onpolicy_params
