"""VTraceA2C on CartPole-v1: A2C whose rollouts are reused for several epochs and replayed,
with IMPALA's V-trace correcting for the policy having moved since the data was collected.

    python examples/a2c_vtrace_cartpole.py
"""

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_pgx import VTraceA2C

env = make_vec_env("CartPole-v1", n_envs=8, seed=0)
model = VTraceA2C(
    "MlpPolicy",
    env,
    n_steps=16,
    n_epochs=4,  # each rollout is used for 4 gradient steps, V-trace corrected
    replay_rollouts=0,  # > 0: also train on the K previous rollouts (kept in a bounded store)
    rho_bar=1.0,  # truncation of the importance weights (IMPALA's default)
    c_bar=1.0,
    verbose=1,
    seed=0,
)
model.learn(total_timesteps=150_000, log_interval=200)
# train/vtrace_rho_mean, train/rho_truncated_fraction and, measured after each update, trust_region/ess,
# trust_region/approx_kl are in the logs.
print(f"replay store: {model.replay_nbytes} bytes")

mean_reward, std_reward = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=1), n_eval_episodes=10)
print(f"deterministic evaluation: {mean_reward:.1f} +- {std_reward:.1f}")
