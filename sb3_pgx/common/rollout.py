"""The time-major rollout: what V-trace, the replay store and rollout workers pass around.

A :class:`Rollout` keeps the environment steps of one rollout in time order, ``[T, N]`` (T steps of
N envs), with the observation after the last step for bootstrapping: the shape V-trace's backward
recursion needs, and one that can be stacked side by side (more env columns) or sliced by env.
"""

from dataclasses import dataclass

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from sb3_pgx.common.base import map_observations
from sb3_pgx.common.update_stats import action_tensor

Observations = th.Tensor | dict[str, th.Tensor]


def cat_observations(observations: list[Observations], dim: int = 0) -> Observations:
    """Observation tensors concatenated along ``dim`` (per entry for dict observations)."""
    if isinstance(observations[0], dict):
        return {key: th.cat([obs[key] for obs in observations], dim=dim) for key in observations[0]}
    return th.cat(observations, dim=dim)


def observations_nbytes(observations: Observations) -> int:
    """Memory held by observation tensors (all entries of a dict observation)."""
    if isinstance(observations, dict):
        return sum(value.nelement() * value.element_size() for value in observations.values())
    return observations.nelement() * observations.element_size()


@dataclass
class Rollout:
    """One rollout, time-major, as V-trace needs it (all tensors on the algorithm's device).

    :param observations: ``[T, N, *obs_shape]`` (or a dict of them)
    :param actions: ``[T, N, action_dim]`` as stored by SB3's rollout buffer (float)
    :param rewards: ``[T, N]`` (SB3 already added ``gamma * V(terminal_obs)`` at time-outs)
    :param discounts: ``gamma_t = gamma * (1 - done_t)``, ``done_t``: the episode ended after step t, ``[T, N]``
    :param behaviour_log_prob: log-probabilities of ``actions`` under the policy that acted, ``[T, N]``
    :param bootstrap_observations: the observation after the last step, ``[N, *obs_shape]``
    """

    observations: Observations
    actions: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor
    behaviour_log_prob: th.Tensor
    bootstrap_observations: Observations

    @classmethod
    def from_buffer(
        cls,
        buffer: RolloutBuffer,
        last_obs: np.ndarray | dict[str, np.ndarray],
        last_episode_starts: np.ndarray,
        gamma: float,
        device: th.device | str,
    ) -> "Rollout":
        """The rollout just collected into SB3's (still time-ordered) rollout buffer, copied out.

        :param buffer: a full ``RolloutBuffer`` or ``DictRolloutBuffer`` not yet flattened by ``get()``
        :param last_obs: the observation after the last step (the algorithm's ``_last_obs``), ``[N, ...]``
        :param last_episode_starts: the ``dones`` of the last step (``_last_episode_starts``), ``[N]``
        :param gamma: discount factor
        :param device: where the tensors go
        """
        if buffer.generator_ready:
            raise RuntimeError("The rollout buffer was already flattened by get(); V-trace needs its time order")

        def tensor(array: np.ndarray) -> th.Tensor:
            return th.tensor(array, dtype=th.float32, device=device)  # a copy

        # done_t (the episode ended after step t) is the next step's episode start; after the
        # last step it is the `dones` of the final env.step, kept as _last_episode_starts.
        dones = np.concatenate([buffer.episode_starts[1:], np.asarray(last_episode_starts)[None]], axis=0)
        observations = map_observations(tensor, buffer.observations)
        if isinstance(buffer.observations, dict):
            bootstrap = {
                key: tensor(np.asarray(last_obs[key]).reshape(buffer.n_envs, *buffer.obs_shape[key]))  # type: ignore[index]
                for key in buffer.observations
            }
        else:
            bootstrap = tensor(np.asarray(last_obs).reshape(buffer.n_envs, *buffer.obs_shape))
        return cls(
            observations=observations,
            actions=tensor(buffer.actions),
            rewards=tensor(buffer.rewards),
            discounts=tensor(gamma * (1.0 - dones.astype(np.float32))),
            behaviour_log_prob=tensor(buffer.log_probs),
            bootstrap_observations=bootstrap,
        )

    @property
    def n_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def n_envs(self) -> int:
        return self.rewards.shape[1]

    @property
    def nbytes(self) -> int:
        """Memory held by this rollout's tensors."""
        tensors = (self.actions, self.rewards, self.discounts, self.behaviour_log_prob)
        return (
            observations_nbytes(self.observations)
            + observations_nbytes(self.bootstrap_observations)
            + sum(t.nelement() * t.element_size() for t in tensors)
        )

    def columns(self, cols: th.Tensor) -> "Rollout":
        """The sub-rollout of the env columns ``cols``, time order kept."""
        return Rollout(
            observations=map_observations(lambda x: x.index_select(1, cols), self.observations),
            actions=self.actions.index_select(1, cols),
            rewards=self.rewards.index_select(1, cols),
            discounts=self.discounts.index_select(1, cols),
            behaviour_log_prob=self.behaviour_log_prob.index_select(1, cols),
            bootstrap_observations=map_observations(lambda x: x.index_select(0, cols), self.bootstrap_observations),
        )

    def flat_actions(self, action_space: spaces.Space) -> th.Tensor:
        """Actions as one batch, in the form the policy's distribution expects (time-major order)."""
        return action_tensor(self.actions.reshape(-1, self.actions.shape[-1]), action_space)

    def flat_observations(self) -> Observations:
        """Observations as one batch ``[T * N, *obs_shape]`` (time-major order)."""
        return map_observations(lambda x: x.reshape(-1, *x.shape[2:]), self.observations)

    @staticmethod
    def concat(rollouts: list["Rollout"]) -> "Rollout":
        """Rollouts of the same length side by side, as more env columns."""
        if len(rollouts) == 1:
            return rollouts[0]
        return Rollout(
            observations=cat_observations([r.observations for r in rollouts], 1),
            actions=th.cat([r.actions for r in rollouts], 1),
            rewards=th.cat([r.rewards for r in rollouts], 1),
            discounts=th.cat([r.discounts for r in rollouts], 1),
            behaviour_log_prob=th.cat([r.behaviour_log_prob for r in rollouts], 1),
            bootstrap_observations=cat_observations([r.bootstrap_observations for r in rollouts], 0),
        )
