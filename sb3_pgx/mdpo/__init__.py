from sb3_pgx.mdpo.mdpo import MDPO, mdpo_step_size
from sb3_pgx.mdpo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["MDPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "mdpo_step_size"]
