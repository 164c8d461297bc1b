from sb3_pgx.vpg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_pgx.vpg.vpg import VanillaPG

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "VanillaPG"]
