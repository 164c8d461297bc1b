"""The algorithms the conformance suite runs over: those of :mod:`sb3_pgx.registry`.

Each comes with its registry entry's small constructor arguments that make one update fast, the
allowed values of its own numeric constructor arguments (for the bad-argument tests of
``test_conf_faults.py``) and the training state save/load must keep.

A constraint is ``("int", low)`` (an integer >= low) or
``("float", low, high, low_open, high_open)`` (a finite real in the interval; None: unbounded).
"""

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch as th

from sb3_pgx import registry

TINY_NET = dict(net_arch=[16])

# Arguments every algorithm of the suite takes (through PGAlgorithm), with their constraints.
COMMON_CONSTRAINTS: dict[str, tuple] = {
    "learning_rate": ("float", 0.0, None, True, False),
    "n_steps": ("int", 1),
    "gamma": ("float", 0.0, 1.0, False, False),
    "gae_lambda": ("float", 0.0, 1.0, False, False),
    "vf_coef": ("float", 0.0, None, False, False),
    "max_grad_norm": ("float", 0.0, None, True, False),
    "diagnostics_epsilon": ("float", 0.0, None, True, False),
    "stats_window_size": ("int", 1),
    "sde_sample_freq": ("int", -1),
}


@dataclass(frozen=True)
class AlgoSpec:
    cls: type
    kwargs: dict[str, Any]
    constraints: dict[str, tuple] = field(default_factory=dict)
    #: the attribute(s) of algorithm state (beyond SB3's) that save/load must keep
    state_attrs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.cls.__name__

    def make(self, policy: str, env, **overrides):
        kwargs = {**self.kwargs, "seed": 0, "device": "cpu", **overrides}
        kwargs["policy_kwargs"] = {**TINY_NET, **kwargs.get("policy_kwargs", {})}
        return self.cls(policy, env, **kwargs)


ALGORITHMS = [
    AlgoSpec(algorithm.cls, algorithm.fast_kwargs, algorithm.argument_ranges, algorithm.state_attrs)
    for algorithm in registry.ALGORITHMS
]

ALGO_IDS = [spec.name for spec in ALGORITHMS]


@pytest.fixture(params=ALGORITHMS, ids=ALGO_IDS)
def algo(request) -> AlgoSpec:
    return request.param


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every conformance test runs on one torch thread (determinism, and CI's 2 cores)."""


def params_equal(model_a, model_b) -> bool:
    state_a, state_b = model_a.policy.state_dict(), model_b.policy.state_dict()
    return state_a.keys() == state_b.keys() and all(th.equal(state_a[k], state_b[k]) for k in state_a)


def all_finite(model) -> bool:
    return all(bool(th.isfinite(p).all()) for p in model.policy.parameters())
