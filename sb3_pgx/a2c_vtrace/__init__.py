from sb3_pgx.a2c_vtrace.a2c_vtrace import VTraceA2C
from sb3_pgx.a2c_vtrace.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_pgx.common.rollout import Rollout

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "Rollout", "VTraceA2C"]
