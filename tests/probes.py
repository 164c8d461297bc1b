"""Test doubles: a callback that records SB3's callback sequence, and for the importance-sampled family
subclasses that move the policy before the epochs and record what the first gradient step saw."""

import copy

import torch as th
from stable_baselines3.common.callbacks import BaseCallback


class EventRecorder(BaseCallback):
    """``events``: SB3's callback sequence, ``"start"``, ``"step"`` and ``"end"`` for each rollout's start,
    step and end. Subclasses that record more call these hooks first."""

    def __init__(self):
        super().__init__()
        self.events: list[str] = []

    def _on_rollout_start(self) -> None:
        self.events.append("start")

    def _on_step(self) -> bool:
        self.events.append("step")
        return True

    def _on_rollout_end(self) -> None:
        self.events.append("end")


class MovedPolicy:
    """Mixin: before the epochs, keep a copy of the behaviour policy (``behaviour_policy``) and move
    every weight of the policy by ``0.3 * N(0, 1)``, so that the first step's importance weights and
    penalties are far from trivial; ``record`` is reset to None."""

    def begin_update(self):
        super().begin_update()
        self.behaviour_policy = copy.deepcopy(self.policy)
        with th.no_grad():
            for param in self.policy.parameters():
                param.add_(0.3 * th.randn_like(param))
        self.record = None


class RecordsFirstPenalty(MovedPolicy):
    """Mixin: ``record`` = ``(penalty, coefficient, old distribution, new distribution)`` of the first
    gradient step of the last update, the distributions (torch's) recomputed from the behaviour copy
    and the policy on that step's minibatch."""

    def penalty_coefficient(self) -> float:
        raise NotImplementedError

    def penalty(self, indices, distribution, log_weights):
        value = super().penalty(indices, distribution, log_weights)
        if self.record is None:
            observations = self.rollout_buffer._get_samples(indices).observations
            with th.no_grad():
                old = self.behaviour_policy.get_distribution(observations).distribution
                new = self.policy.get_distribution(observations).distribution
            self.record = (value.item(), self.penalty_coefficient(), old, new)
        return value
