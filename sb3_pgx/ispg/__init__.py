from sb3_pgx.ispg.ispg import ImportanceSampledPG
from sb3_pgx.ispg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "ImportanceSampledPG", "MlpPolicy", "MultiInputPolicy"]
