"""Tiny environments for exact tests."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class EpisodicEnv(gym.Env):
    """Base of the random-observation envs: ``_obs()`` draws each observation, ``reward(action)`` scores
    the action against the current one, and episodes end by truncation after ``length`` steps."""

    length = 20

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = self.reward(action)
        self.t += 1
        return self._obs(), reward, False, self.t >= self.length, {}


class TwoStepMDP(gym.Env):
    """Two-state episodic MDP with one-hot observations.

    State 0: action a gives reward ``rewards[0][a]`` and moves to state 1.
    State 1: action a gives reward ``rewards[1][a]`` and ends the episode.
    """

    observation_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, rewards=((1.0, 0.0), (0.0, 2.0))):
        self.rewards = rewards
        self.state = 0

    def _obs(self) -> np.ndarray:
        return np.eye(2, dtype=np.float32)[self.state]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(self.rewards[self.state][int(action)])
        terminated = self.state == 1
        self.state = 0 if terminated else 1
        return self._obs(), reward, terminated, False, {}


class NaNRewardEnv(gym.Env):
    """A 1-D env whose reward turns NaN after ``nan_after`` steps."""

    observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, nan_after: int = 20):
        self.nan_after = nan_after
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.t > self.nan_after else 1.0
        return np.zeros(3, dtype=np.float32), reward, self.t % 10 == 0, False, {}


class DictObsEnv(EpisodicEnv):
    """Dict observation (a Box and a Discrete part), Box action; reward: stay near zero. Episodes of 20 steps."""

    observation_space = spaces.Dict({"vec": spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32), "mode": spaces.Discrete(3)})
    action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def _obs(self):
        return {"vec": self.np_random.uniform(-1, 1, size=3).astype(np.float32), "mode": int(self.np_random.integers(3))}

    def reward(self, action) -> float:
        return -float(np.sum(np.square(action)))
