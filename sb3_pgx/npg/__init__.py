from sb3_pgx.npg.npg import NaturalPG
from sb3_pgx.npg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "NaturalPG"]
