from sb3_pgx.a2c_vtrace.a2c_vtrace import Rollout, VTraceA2C
from sb3_pgx.a2c_vtrace.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "Rollout", "VTraceA2C"]
