"""Argument checks shared by every constructor.

Each check raises ``ValueError`` naming the parameter, the value given and what is allowed,
before anything (environment, networks) is built, so a bad call loses nothing.
"""

import math
from collections.abc import Callable, Iterable
from typing import Any


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"a number {'>' if low_open else '>='} {low}"
    return f"a number {'<' if high_open else '<='} {high}"


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise unless ``value`` is a finite real number inside the given interval."""
    allowed = _describe(low, high, low_open, high_open)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: expected {allowed}")


def check_int(name: str, value: Any, low: int) -> None:
    """Raise unless ``value`` is an integer ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} is not allowed: expected an integer >= {low}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed: expected one of {', '.join(map(repr, choices))}")


def check_batch_size(batch_size: int | None, n_steps: int, n_envs: int) -> None:
    """Raise unless a minibatch fits in the rollout: ``batch_size <= n_steps * n_envs`` (None: the whole rollout).

    Called once ``n_envs`` is known, after ``check_int("batch_size", batch_size, 1)``. A larger
    minibatch would silently be the whole rollout (SB3's buffer slices past the end), so a PPO
    user keeping ``batch_size=64`` with a shorter rollout would not get the updates asked for.
    """
    rollout = n_steps * n_envs
    if batch_size is not None and batch_size > rollout:
        raise ValueError(
            f"batch_size={batch_size!r} is not allowed: expected an integer in [1, n_steps * n_envs = "
            f"{n_steps} * {n_envs} = {rollout}], or None for full-batch steps"
        )


def check_schedule(name: str, value: float | Callable[[float], float]) -> None:
    """Raise unless ``value`` is a positive number, or a schedule positive at the start of
    training and non-negative at its end (rl-zoo3's ``lin_`` schedules reach 0 there)."""
    if callable(value):
        try:
            check_range(f"{name}(1.0)", value(1.0), low=0.0, low_open=True)
            check_range(f"{name}(0.0)", value(0.0), low=0.0)
        except ValueError as error:
            raise ValueError(f"{name} schedule is not allowed: {error}") from None
    else:
        check_range(name, value, low=0.0, low_open=True)


def check_on_policy_arguments(arguments: dict[str, Any]) -> None:
    """The checks of SB3's ``OnPolicyAlgorithm`` arguments every algorithm of the suite needs.

    :param arguments: the arguments, by name, as they will reach ``OnPolicyAlgorithm.__init__``
    """
    check_schedule("learning_rate", arguments["learning_rate"])
    check_int("n_steps", arguments["n_steps"], 1)
    check_range("gamma", arguments["gamma"], 0.0, 1.0)
    check_range("gae_lambda", arguments["gae_lambda"], 0.0, 1.0)
    check_range("ent_coef", arguments["ent_coef"], low=0.0)
    check_range("vf_coef", arguments["vf_coef"], low=0.0)
    # Every update of the suite clips the gradient norm: None is not "no clipping" here.
    check_range("max_grad_norm", arguments["max_grad_norm"], low=0.0, low_open=True)
    check_int("stats_window_size", arguments.get("stats_window_size", 100), 1)
    check_int("sde_sample_freq", arguments.get("sde_sample_freq", -1), -1)
