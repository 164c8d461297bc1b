"""sb3_pgx: the policy-gradient family between REINFORCE and PPO for Stable-Baselines3."""

from sb3_pgx.a2c_vtrace import VTraceA2C
from sb3_pgx.callbacks import ClipFractionCallback, ESSCallback, TrustRegionMonitorCallback, TrustRegionWarning
from sb3_pgx.common.base import NonFiniteError
from sb3_pgx.common.diagnostics import (
    clip_fraction,
    effective_sample_size,
    kl_k1,
    kl_k3,
    normalized_ess,
    ratio_stats,
)
from sb3_pgx.common.vtrace import VTraceReturns, vtrace
from sb3_pgx.ispg import ImportanceSampledPG
from sb3_pgx.mdpo import MDPO
from sb3_pgx.npg import NaturalPG
from sb3_pgx.ppo_kl import AdaptiveKLPPO
from sb3_pgx.version import __version__
from sb3_pgx.vpg import VanillaPG

__all__ = [
    "MDPO",
    "AdaptiveKLPPO",
    "ImportanceSampledPG",
    "ClipFractionCallback",
    "ESSCallback",
    "TrustRegionMonitorCallback",
    "TrustRegionWarning",
    "NaturalPG",
    "NonFiniteError",
    "VTraceA2C",
    "VTraceReturns",
    "VanillaPG",
    "__version__",
    "clip_fraction",
    "effective_sample_size",
    "kl_k1",
    "kl_k3",
    "normalized_ess",
    "ratio_stats",
    "vtrace",
]
