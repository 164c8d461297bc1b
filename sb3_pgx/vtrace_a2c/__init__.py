from sb3_pgx.vtrace_a2c.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_pgx.vtrace_a2c.vtrace_a2c import Rollout, VTraceA2C

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "Rollout", "VTraceA2C"]
