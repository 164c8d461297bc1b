from sb3_pgx.ppo_kl.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_pgx.ppo_kl.ppo_kl import AdaptiveKLPPO, adapt_kl_coef

__all__ = ["AdaptiveKLPPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "adapt_kl_coef"]
