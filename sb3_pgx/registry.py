"""The one list of the suite's algorithms, and what every tool needs to know about each.

The package exports, the rl-zoo3 glue, the docs generator, the benchmarks and the conformance
suite all read :data:`ALGORITHMS`; adding an algorithm is its folder, one line here, its
``hyperparams/<name>.yml`` and its ``docs/algorithms/<name>.md`` (see ``docs/adding_an_algorithm.md``).

The order is the order of every table and plot the benchmarks write.
"""

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_pgx.a2c_vtrace import VTraceA2C
from sb3_pgx.ispg import ImportanceSampledPG
from sb3_pgx.mdpo import MDPO
from sb3_pgx.npg import NaturalPG
from sb3_pgx.ppo_kl import AdaptiveKLPPO
from sb3_pgx.vpg import VanillaPG

#: A numeric argument's allowed values: ``("int", low)``, an integer >= low, or
#: ``("float", low, high, low_open, high_open)``, a finite real in that interval (None: unbounded).
Range = tuple


@dataclass(frozen=True)
class Algorithm:
    """One algorithm of the suite.

    :param cls: the algorithm's class
    :param name: its rl-zoo3 name, which is also its folder (``sb3_pgx/<name>/``), its
        hyperparameter file (``hyperparams/<name>.yml``) and its docs page (``docs/algorithms/<name>.md``)
    :param baseline: rl-zoo3 name of the SB3 / sb3-contrib algorithm it is judged against
    :param fast_kwargs: constructor arguments that make one update take milliseconds (the
        conformance suite's settings)
    :param argument_ranges: the allowed values of its own numeric constructor arguments (beyond
        those every algorithm takes): the spec the conformance suite's bad-argument tests check
    :param state_attrs: attributes of training state, beyond SB3's, that save/load must keep
    """

    cls: type[OnPolicyAlgorithm]
    name: str
    baseline: str
    fast_kwargs: dict[str, Any] = field(default_factory=dict)
    argument_ranges: dict[str, Range] = field(default_factory=dict)
    state_attrs: tuple[str, ...] = ()

    @property
    def sampler(self) -> Any:
        """Its Optuna sampler for rl-zoo3's ``-optimize``: ``sample_params`` of ``sb3_pgx/<name>/sampler.py``
        (imported on demand: it needs the ``zoo`` extra)."""
        return import_module(f"sb3_pgx.{self.name}.sampler").sample_params


_NON_NEGATIVE = ("float", 0.0, None, False, False)
_POSITIVE = ("float", 0.0, None, True, False)

ALGORITHMS: tuple[Algorithm, ...] = (
    Algorithm(
        VanillaPG, "vpg", baseline="a2c",
        fast_kwargs=dict(n_steps=16, batch_size=16, n_critic_updates=1),
        argument_ranges={"batch_size": ("int", 1), "n_critic_updates": ("int", 1), "ent_coef": _NON_NEGATIVE},
    ),
    Algorithm(
        ImportanceSampledPG, "ispg", baseline="ppo",
        fast_kwargs=dict(n_steps=16, batch_size=8, n_epochs=2),
        argument_ranges={
            "batch_size": ("int", 1), "n_epochs": ("int", 1), "max_weight": _POSITIVE,
            "min_ess": ("float", 0.0, 1.0, True, False), "clip_range_vf": _POSITIVE, "ent_coef": _NON_NEGATIVE,
        },
    ),
    Algorithm(
        NaturalPG, "npg", baseline="trpo",
        fast_kwargs=dict(n_steps=16, batch_size=16, cg_max_steps=3, n_critic_updates=1),
        argument_ranges={
            "batch_size": ("int", 1), "cg_max_steps": ("int", 1), "cg_damping": _NON_NEGATIVE,
            "target_kl": _POSITIVE, "sub_sampling_factor": ("int", 1), "n_critic_updates": ("int", 1),
        },
    ),
    Algorithm(
        AdaptiveKLPPO, "ppo_kl", baseline="ppo",
        fast_kwargs=dict(n_steps=16, batch_size=8, n_epochs=2),
        argument_ranges={
            "batch_size": ("int", 1), "n_epochs": ("int", 1), "kl_coef": ("float", 1e-8, 1e8, False, False),
            "target_kl": _POSITIVE, "kl_tolerance": ("float", 1.0, None, True, False),
            "kl_factor": ("float", 1.0, None, True, False), "clip_range": _POSITIVE, "clip_range_vf": _POSITIVE,
            "ent_coef": _NON_NEGATIVE,
        },
        state_attrs=("kl_coef",),
    ),
    Algorithm(
        MDPO, "mdpo", baseline="ppo",
        fast_kwargs=dict(n_steps=16, batch_size=8, n_sgd_steps=2),
        argument_ranges={
            "batch_size": ("int", 1), "n_sgd_steps": ("int", 1), "min_step_size": ("float", 0.0, 1.0, True, False),
            "clip_range_vf": _POSITIVE, "ent_coef": _NON_NEGATIVE,
        },
        state_attrs=("_mdpo_iteration",),
    ),
    Algorithm(
        VTraceA2C, "a2c_vtrace", baseline="a2c",
        fast_kwargs=dict(n_steps=8, n_epochs=2, replay_rollouts=1),
        argument_ranges={
            "n_epochs": ("int", 1), "n_env_minibatches": ("int", 1), "replay_rollouts": ("int", 0),
            "rho_bar": _POSITIVE, "c_bar": _POSITIVE, "pg_rho_bar": _POSITIVE, "rms_prop_eps": _POSITIVE,
            "ent_coef": _NON_NEGATIVE,
        },
    ),
)  # fmt: skip

BY_NAME: dict[str, Algorithm] = {algorithm.name: algorithm for algorithm in ALGORITHMS}


def get(name: str) -> Algorithm:
    """The algorithm registered under the rl-zoo3 name ``name``."""
    if name not in BY_NAME:
        raise ValueError(f"algo={name!r} is not an sb3_pgx algorithm: expected one of {', '.join(BY_NAME)}")
    return BY_NAME[name]
