"""Trust-region monitoring for any SB3 on-policy algorithm.

After each policy update these callbacks measure how far the update moved the policy from
the batch it was computed on: normalised effective sample size of the importance weights,
clip fraction at a trust-region half-width epsilon, KL(pi_old || pi_new) (exact and the k3
estimator), k1 estimate and maximum ratio. They work with stock PPO and A2C, sb3-contrib's
TRPO, MaskablePPO (masked distribution) and RecurrentPPO (re-run over each sequence) and
every sb3_pgx algorithm, and use the same function and the same logger keys
(``trust_region/<figure>``) as the sb3_pgx algorithms' own post-update figures
(:func:`~sb3_pgx.common.update_stats.policy_update_stats`), so the two agree exactly for the same
update.

When the figures of an update are known. SB3's ``learn()`` loop is::

    collect_rollouts (on_rollout_start, steps, on_rollout_end) -> dump_logs -> train() -> ...

SB3 resets the rollout buffer before ``on_rollout_start``, so the callback copies what it
needs (observations, actions, behaviour log-probabilities, action masks or LSTM start
states, and a frozen copy of the behaviour distribution) at ``on_rollout_end``. Update ``k``
(the ``train()`` after rollout ``k``) is measured at the next ``on_rollout_start``, recorded
into the model's logger there, and so written by the next ``dump_logs``, in the same row as
the algorithm's own ``train/`` figures of that update (an sb3_pgx algorithm has recorded the same
``trust_region/`` figures at the end of its ``train()``; the callback records them again, equal, but
for a ``clip_epsilon`` of its own, whose clip fraction replaces the algorithm's unless ``prefix`` differs).
The last update of a run is measured at ``on_training_end``: it enters the history (and the CSV
file) but, like SB3's own ``train/`` figures of the last update, no ``dump_logs`` follows it.
"""

import csv
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, TypedDict, Unpack

import numpy as np
import torch as th
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableRolloutBuffer
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_pgx.common.base import base_arguments, map_observations
from sb3_pgx.common.update_stats import (
    TRUST_REGION_PREFIX,
    BehaviourBatch,
    action_tensor,
    policy_update_stats,
    snapshot_distribution,
    trust_region_epsilon,
)
from sb3_pgx.common.validation import check_range

__all__ = [
    "ClipFractionCallback",
    "ESSCallback",
    "TrustRegionMonitorCallback",
    "TrustRegionWarning",
]

#: Every figure the monitor can report, in the order of the history's columns.
ALL_FIGURES = ("ess", "clip_fraction", "kl", "approx_kl", "kl_k1", "max_ratio")
#: sb3-contrib's buffers that keep the action masks the behaviour policy acted under (MaskablePPO).
MASKABLE_BUFFERS = (MaskableRolloutBuffer, MaskableDictRolloutBuffer)
#: sb3-contrib's buffers that keep the LSTM states of each step (RecurrentPPO).
RECURRENT_BUFFERS = (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer)
#: What a violated threshold does.
ACTIONS = ("warn", "stop")
#: Threshold name -> (figure it tests, human name, comparison).
_THRESHOLDS = {
    "min_ess": ("ess", "ESS/N", "below"),
    "max_kl": ("kl", "KL", "above"),
    "max_clip_fraction": ("clip_fraction", "clip fraction", "above"),
}


class TrustRegionWarning(UserWarning):
    """An update left the trust region set by a monitor's threshold."""


def _flat(buffer: RolloutBuffer, array: np.ndarray) -> np.ndarray:
    """A ``[n_steps, n_envs, ...]`` buffer array as ``[N, ...]``, env-major as ``get()`` orders it.

    Each environment's steps stay together and in time order, which a recurrent policy's
    re-run needs. Once someone has called ``get()`` the buffer's arrays are already flat.
    """
    return array if buffer.generator_ready else buffer.swap_and_flatten(array)


def behaviour_batch(model: OnPolicyAlgorithm, with_distribution: bool) -> BehaviourBatch:
    """The full rollout buffer of ``model`` as the batch its next update will be computed on.

    Besides observations, actions and behaviour log-probabilities it keeps what the behaviour
    distribution was conditioned on: the stored action masks of a maskable buffer, or, for a
    recurrent buffer, the sequences and LSTM states from which the rollout is re-run (see
    :func:`recurrent_sequences`).

    :param model: an on-policy algorithm right after a rollout (its buffer is full)
    :param with_distribution: also snapshot the behaviour distribution (for the exact KL)
    """
    buffer = model.rollout_buffer
    rows, recurrent = slice(None), {}
    if isinstance(buffer, RECURRENT_BUFFERS):
        rows, recurrent = recurrent_sequences(buffer)

    def batch_of(array: np.ndarray) -> th.Tensor:
        return buffer.to_torch(_flat(buffer, array)[rows])

    batch = BehaviourBatch(
        observations=map_observations(batch_of, buffer.observations),
        actions=action_tensor(batch_of(buffer.actions), model.action_space),
        old_log_prob=batch_of(buffer.log_probs).flatten(),
        action_masks=batch_of(buffer.action_masks) if isinstance(buffer, MASKABLE_BUFFERS) else None,
        **recurrent,
    )  # fmt: skip
    if with_distribution:
        batch.old_distribution = snapshot_distribution(model.policy, batch)
    return batch


#: Padding a recurrent rollout into sequences without episode starts may grow it at most this
#: many times (many short episodes beside one long one would pad every short one to its length).
#: Default RecurrentPPO on CartPole-v1 grows it 1.0-2.9 times over its first 8k steps.
MAX_PADDING = 4.0


def recurrent_sequences(buffer: RolloutBuffer) -> tuple[np.ndarray, dict[str, Any]]:
    """Lay a recurrent rollout out as sequences for the LSTM to re-run, from the states it started from.

    Each environment's rollout is cut at its episode starts into ``S`` stretches, each padded
    at its end to the longest length ``L``, so that no sequence resets inside and one LSTM
    call re-runs them all (sb3-contrib's policies step through a sequence one time step at a
    time in Python when it holds a reset). Padding rows repeat the stretch's last row: an
    LSTM is causal, so they cannot change the outputs of the rows before them, and the
    statistics leave them out. If that would grow the batch more than :data:`MAX_PADDING`
    times, each environment's rollout stays one sequence with its episode starts instead.
    A stretch that opens the rollout starts from the LSTM state sb3-contrib stored before
    that environment's first step (zero if an episode starts there); any other opens an
    episode, so it starts from zero.

    :return: ``rows``, indices into the env-major flat batch (``[S * L]``), and the
        :class:`BehaviourBatch` fields ``lstm_states`` (each ``[num_layers, S, hidden_size]``),
        ``valid`` (False on padding) and ``episode_starts`` (None when no sequence resets inside)
    """
    n_steps, n_envs = buffer.buffer_size, buffer.n_envs
    episode_starts = _flat(buffer, buffer.episode_starts).reshape(n_envs, n_steps)
    cuts = episode_starts > 0
    cuts[:, 0] = True
    starts = np.flatnonzero(cuts)  # env-major flat index e * n_steps + t of each stretch's first row
    ends = np.append(starts[1:], n_envs * n_steps)
    length = int(np.max(ends - starts))
    inner_starts = None
    if len(starts) * length > MAX_PADDING * n_envs * n_steps:
        starts, ends, length = np.arange(n_envs) * n_steps, np.arange(1, n_envs + 1) * n_steps, n_steps
        inner_starts = buffer.to_torch(episode_starts.reshape(-1))
    offsets = np.arange(length)
    valid = offsets[None, :] < (ends - starts)[:, None]
    rows = np.where(valid, starts[:, None] + offsets[None, :], (ends - 1)[:, None])

    keep = ((starts % n_steps == 0) & (episode_starts.reshape(-1)[starts] == 0)).astype(np.float32)
    env = starts // n_steps

    def start_states(per_step: np.ndarray) -> th.Tensor:
        # sb3-contrib stores [n_steps, num_layers, n_envs, hidden]; after get(), [n_envs * n_steps, num_layers, hidden].
        first = per_step[0] if not buffer.generator_ready else per_step[::n_steps].swapaxes(0, 1)
        return buffer.to_torch(first[:, env] * keep[None, :, None])

    return rows.reshape(-1), {
        "lstm_states": (start_states(buffer.hidden_states_pi), start_states(buffer.cell_states_pi)),
        "valid": None if valid.all() else buffer.to_torch(valid.reshape(-1)).bool(),
        "episode_starts": inner_starts,
    }


def check_measurable(model: Any, who: str) -> None:
    """Raise a TypeError that says what is needed unless the monitors can measure ``model``'s updates.

    They need the batch of each update and the distribution the behaviour policy drew it
    from: an SB3 on-policy algorithm with a rollout buffer, whose policy is an actor-critic
    one (plain, or sb3-contrib's maskable one with the masks kept in a maskable buffer, or
    sb3-contrib's recurrent one with the LSTM states kept in a recurrent buffer).
    """
    need = (
        f"{who} needs an on-policy algorithm (a subclass of SB3's OnPolicyAlgorithm with a RolloutBuffer) whose policy "
        "is SB3's ActorCriticPolicy (PPO, A2C, TRPO, sb3_pgx), sb3-contrib's MaskableActorCriticPolicy with a "
        "MaskableRolloutBuffer (MaskablePPO) or RecurrentActorCriticPolicy with a RecurrentRolloutBuffer (RecurrentPPO)"
    )
    buffer = getattr(model, "rollout_buffer", None)
    policy = getattr(model, "policy", None)
    if not isinstance(model, OnPolicyAlgorithm) or not isinstance(buffer, RolloutBuffer):
        raise TypeError(f"{need}; got {type(model).__name__}, which is not an on-policy algorithm with a rollout buffer")
    if isinstance(policy, RecurrentActorCriticPolicy):
        supported = isinstance(buffer, RECURRENT_BUFFERS)
    elif isinstance(policy, MaskableActorCriticPolicy):
        supported = isinstance(buffer, MASKABLE_BUFFERS)
    else:
        supported = isinstance(policy, ActorCriticPolicy) and not isinstance(buffer, RECURRENT_BUFFERS)
    if not supported:
        raise TypeError(f"{need}; got {type(model).__name__} with {type(policy).__name__} and {type(buffer).__name__}")


def _check_action(name: str, action: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"{name}={action!r} is not allowed: expected one of {', '.join(map(repr, ACTIONS))}")


class TrustRegionMonitorCallback(BaseCallback):
    """
    Measure every policy update of an on-policy algorithm against the batch it used.

    After each update the updated policy is evaluated, in one forward pass, on the rollout the
    update was computed from, and the figures go to the model's logger under ``prefix/``
    (``trust_region/`` by default, the keys under which the sb3_pgx algorithms log the same
    figures themselves; stdout, CSV and TensorBoard, like SB3's own) and into :attr:`history`:

    - ``ess``: normalised effective sample size ``(sum w)^2 / (N sum w^2)`` in ``(0, 1]``
    - ``clip_fraction``: share of samples with ``|w - 1| > clip_epsilon``
    - ``kl``: exact mean KL(pi_old || pi_new) from the two distributions (if ``exact_kl``)
    - ``approx_kl``: the k3 estimator ``mean((w - 1) - log w)`` (what SB3's PPO logs)
    - ``kl_k1``: the k1 estimator ``mean(-log w)``
    - ``max_ratio``: the largest importance weight ``w``

    with ``w = pi_new(a|s) / pi_old(a|s)``. These are measured after the update on the whole
    batch: PPO's ``train/clip_fraction`` and ``train/approx_kl`` are other figures (minibatch
    averages during the epochs). Update ``k`` is measured when rollout ``k + 1`` starts (the last
    one when training ends), so its figures appear in the logger dump that also holds the
    algorithm's ``train/`` figures of update ``k``.

    Works with PPO, A2C, sb3-contrib's TRPO, MaskablePPO and RecurrentPPO and the sb3_pgx
    algorithms, any action space their policies support (Discrete, Box, MultiDiscrete,
    MultiBinary), Dict observations and several environments. For MaskablePPO the figures
    are those of the masked distribution, with the masks stored in the rollout buffer. For
    RecurrentPPO the updated policy is re-run over each environment's sequence of the rollout
    from the LSTM state stored at its first step, reset at episode starts, so old and new
    probabilities condition on the same history. Anything else raises a TypeError at the
    start of training that says what is needed.

    :param clip_epsilon: Trust-region half-width for ``clip_fraction``. ``None`` (default):
        the model's ``clip_range`` at the current progress where it has one (PPO), else its
        ``diagnostics_epsilon`` (sb3_pgx algorithms), else 0.2
    :param min_ess: Act when the normalised ESS of an update falls below this, in ``(0, 1]``
    :param max_kl: Act when the KL of an update exceeds this (the exact KL, or the k3
        estimate when ``exact_kl=False``), ``> 0``
    :param max_clip_fraction: Act when the clip fraction of an update exceeds this, in ``[0, 1]``
    :param action: What a violated threshold does: ``"warn"`` (a :class:`TrustRegionWarning`
        naming the update and the figure; training goes on) or ``"stop"`` (training stops at
        the first environment step after the update is measured, i.e. right after the
        update). Either one action for all thresholds or a dict from threshold name
        (``"min_ess"``, ``"max_kl"``, ``"max_clip_fraction"``) to action; thresholds missing
        from the dict warn
    :param exact_kl: Whether to compute the exact KL; it needs a frozen copy of the behaviour
        distribution, i.e. a second forward pass over the batch per update
    :param prefix: Logger key prefix: figures are logged as ``prefix/<figure>``. The default,
        ``"trust_region"``, is the prefix of the sb3_pgx algorithms' own post-update figures
    :param csv_path: If given, the history is written to this CSV file, one row per update as
        it is measured (the file is started afresh by the first run of this callback)
    :param verbose: Verbosity level: 0 nothing, 1 a line when a threshold stops training,
        2 also one line per update
    """

    #: The figures this callback logs (subclasses report a subset).
    figures: ClassVar[tuple[str, ...]] = ALL_FIGURES

    def __init__(
        self,
        clip_epsilon: float | None = None,
        min_ess: float | None = None,
        max_kl: float | None = None,
        max_clip_fraction: float | None = None,
        action: str | Mapping[str, str] = "warn",
        exact_kl: bool = True,
        prefix: str = TRUST_REGION_PREFIX,
        csv_path: str | os.PathLike | None = None,
        verbose: int = 0,
    ):
        if clip_epsilon is not None:
            check_range("clip_epsilon", clip_epsilon, low=0.0, low_open=True)
        if min_ess is not None:
            check_range("min_ess", min_ess, 0.0, 1.0, low_open=True)
        if max_kl is not None:
            check_range("max_kl", max_kl, low=0.0, low_open=True)
        if max_clip_fraction is not None:
            check_range("max_clip_fraction", max_clip_fraction, 0.0, 1.0)
        thresholds = {"min_ess": min_ess, "max_kl": max_kl, "max_clip_fraction": max_clip_fraction}
        if isinstance(action, Mapping):
            for name, value in action.items():
                if name not in _THRESHOLDS:
                    raise ValueError(
                        f"action key {name!r} is not allowed: expected one of {', '.join(map(repr, _THRESHOLDS))}"
                    )
                _check_action(f"action[{name!r}]", value)
            actions = {name: action.get(name, "warn") for name in _THRESHOLDS}
        else:
            _check_action("action", action)
            actions = dict.fromkeys(_THRESHOLDS, action)
        if not isinstance(prefix, str) or not prefix or prefix.endswith("/"):
            raise ValueError(f"prefix={prefix!r} is not allowed: expected a non-empty string without a trailing '/'")
        super().__init__(verbose=verbose)
        self.clip_epsilon = clip_epsilon
        self.thresholds = {name: value for name, value in thresholds.items() if value is not None}
        self.actions = actions
        self.exact_kl = exact_kl
        self.prefix = prefix
        self.csv_path = None if csv_path is None else os.fspath(csv_path)
        #: One dict per measured update: ``update`` (1-based), ``timesteps`` (environment
        #: steps collected when the update was made), ``clip_epsilon`` and the figures.
        self.history: list[dict[str, float]] = []
        #: Why training was stopped (None while it was not).
        self.stop_reason: str | None = None
        self._pending: BehaviourBatch | None = None
        self._pending_timesteps = 0
        self._stop_requested = False
        self._csv_fields: list[str] | None = None

    # ----------------------------------------------------------------- SB3 hooks
    def _init_callback(self) -> None:
        check_measurable(self.model, self.__class__.__name__)

    def _on_training_start(self) -> None:
        self._pending = None
        self._stop_requested = False
        self.stop_reason = None  # of this learn: a later one that runs to the end has none

    def _on_rollout_end(self) -> None:
        """Keep the batch the next update will be computed on (SB3 resets the buffer before we measure)."""
        self._pending = behaviour_batch(self.model, with_distribution=self.exact_kl)
        self._pending_timesteps = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        self._measure()

    def _on_step(self) -> bool:
        # The only per-step work: stop right after an update that broke a "stop" threshold.
        return not self._stop_requested

    def _on_training_end(self) -> None:
        self._measure()

    # ----------------------------------------------------------------- measurement
    def current_clip_epsilon(self) -> float:
        """The clip fraction's epsilon for the update being measured: ``clip_epsilon`` if given,
        else the one the algorithms use (:func:`~sb3_pgx.common.update_stats.trust_region_epsilon`)."""
        if self.clip_epsilon is not None:
            return float(self.clip_epsilon)
        return trust_region_epsilon(self.model)

    def _measure(self) -> None:
        """Evaluate the updated policy on the kept batch; record, check thresholds, forget the batch."""
        if self._pending is None:
            return
        batch, self._pending = self._pending, None
        epsilon = self.current_clip_epsilon()
        stats = policy_update_stats(self.model.policy, batch, epsilon)
        update = len(self.history) + 1
        row: dict[str, float] = {"update": update, "timesteps": self._pending_timesteps, "clip_epsilon": epsilon}
        for figure in self.figures:
            if figure in stats:
                row[figure] = stats[figure]
                self.logger.record(f"{self.prefix}/{figure}", stats[figure])
        self.history.append(row)
        if self.csv_path is not None:
            self._append_csv(row)
        if self.verbose >= 2:
            print(f"{self.__class__.__name__}: " + ", ".join(f"{key}={value:.4g}" for key, value in row.items()))
        self._check_thresholds(row, stats)

    def _check_thresholds(self, row: dict[str, float], stats: dict[str, float]) -> None:
        for name, limit in self.thresholds.items():
            figure, label, direction = _THRESHOLDS[name]
            if figure == "kl" and "kl" not in stats:
                figure, label = "approx_kl", "KL (k3 estimate)"
            value = stats[figure]
            inside = value >= limit if direction == "below" else value <= limit
            if inside:  # NaN is never inside
                continue
            message = (
                f"{self.__class__.__name__}: update {row['update']} (timestep {row['timesteps']}): "
                f"{label} = {value:.4g} is {direction} {name} = {limit:g}"
            )
            if self.actions[name] == "warn":
                warnings.warn(message, TrustRegionWarning, stacklevel=2)
            elif not self._stop_requested:
                self._stop_requested = True
                self.stop_reason = message
                if self.verbose >= 1:
                    print(message + "; stopping training")

    # ----------------------------------------------------------------- history
    def _append_csv(self, row: dict[str, float]) -> None:
        start = self._csv_fields is None
        if start:
            self._csv_fields = list(row)
            directory = os.path.dirname(self.csv_path)
            if directory:
                os.makedirs(directory, exist_ok=True)
        with open(self.csv_path, "w" if start else "a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self._csv_fields, extrasaction="ignore")
            if start:
                writer.writeheader()
            writer.writerow(row)

    def save_history(self, path: str | os.PathLike) -> None:
        """Write :attr:`history` to a CSV file (one row per update), readable by :mod:`sb3_pgx.plot_monitor`."""
        fields: list[str] = []
        for row in self.history:
            fields += [key for key in row if key not in fields]
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fields or ["update", "timesteps"], restval=math.nan)
            writer.writeheader()
            writer.writerows(self.history)

    def history_arrays(self) -> dict[str, np.ndarray]:
        """:attr:`history` as one float array per column (NaN where an update lacks the column)."""
        keys: list[str] = []
        for row in self.history:
            keys += [key for key in row if key not in keys]
        return {key: np.array([row.get(key, math.nan) for row in self.history], dtype=float) for key in keys}


class MonitorOutput(TypedDict, total=False):
    """Where the figures of a single-figure monitor go (:class:`ESSCallback`, :class:`ClipFractionCallback`),
    with :class:`TrustRegionMonitorCallback`'s defaults.

    :param prefix: Logger key prefix (default ``"trust_region"``)
    :param csv_path: If given, the history is written to this CSV file as it grows
    :param verbose: Verbosity level (default 0)
    """

    prefix: str
    csv_path: str | os.PathLike | None
    verbose: int


class ESSCallback(TrustRegionMonitorCallback):
    """
    Log the normalised effective sample size ``ESS/N`` of each update (``prefix/ess``).

    ``ESS/N = (sum w)^2 / (N sum w^2)`` in ``(0, 1]``: 1 means the updated policy could have
    collected the batch itself; ``1/N`` means one sample carries all the weight.
    See :class:`TrustRegionMonitorCallback` for when the figure is measured and logged.

    :param min_ess: Act when ``ESS/N`` falls below this, in ``(0, 1]``
    :param action: ``"warn"`` or ``"stop"``
    :param output: ``prefix``, ``csv_path`` and ``verbose``, as :class:`MonitorOutput` says
    """

    figures: ClassVar[tuple[str, ...]] = ("ess",)

    def __init__(self, min_ess: float | None = None, action: str = "warn", **output: Unpack[MonitorOutput]):
        super().__init__(**base_arguments(locals()), exact_kl=False)


class ClipFractionCallback(TrustRegionMonitorCallback):
    """
    Log the share of the batch outside the trust region ``|w - 1| <= epsilon`` after each update (``prefix/clip_fraction``).

    Unlike PPO's ``train/clip_fraction`` (an average over minibatches during the epochs),
    this is measured once, after the update, on the whole batch (``trust_region/clip_fraction``).
    See :class:`TrustRegionMonitorCallback` for when the figure is measured and logged.

    :param clip_epsilon: Trust-region half-width; ``None``: the model's ``clip_range`` where
        it has one, else its ``diagnostics_epsilon``, else 0.2
    :param max_clip_fraction: Act when the clip fraction exceeds this, in ``[0, 1]``
    :param action: ``"warn"`` or ``"stop"``
    :param output: ``prefix``, ``csv_path`` and ``verbose``, as :class:`MonitorOutput` says
    """

    figures: ClassVar[tuple[str, ...]] = ("clip_fraction",)

    def __init__(
        self,
        clip_epsilon: float | None = None,
        max_clip_fraction: float | None = None,
        action: str = "warn",
        **output: Unpack[MonitorOutput],
    ):
        super().__init__(**base_arguments(locals()), exact_kl=False)
