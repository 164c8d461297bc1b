# NaturalPG uses SB3's actor-critic policies as they are: the actor / critic split is by
# parameter name (PGAlgorithm.actor_critic_parameters), so no separate TRPO-style policy is needed.
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy
