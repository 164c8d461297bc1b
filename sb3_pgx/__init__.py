"""sb3_pgx: the policy-gradient family between REINFORCE and PPO for Stable-Baselines3."""

from sb3_pgx.common.base import NonFiniteError
from sb3_pgx.common.diagnostics import (
    clip_fraction,
    effective_sample_size,
    kl_k1,
    kl_k3,
    normalized_ess,
    ratio_stats,
)
from sb3_pgx.version import __version__
from sb3_pgx.vpg import VanillaPG

__all__ = [
    "NonFiniteError",
    "VanillaPG",
    "__version__",
    "clip_fraction",
    "effective_sample_size",
    "kl_k1",
    "kl_k3",
    "normalized_ess",
    "ratio_stats",
]
