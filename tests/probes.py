"""Test doubles for the importance-sampled family: subclasses that move the policy before the
epochs and record what the first gradient step saw."""

import copy

import torch as th


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
