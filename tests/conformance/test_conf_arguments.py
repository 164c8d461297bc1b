"""Every argument of a constructor reaches the class that uses it: the leaf's own arguments stay
with it, SB3's reach ``OnPolicyAlgorithm`` unchanged (the leaves hand them on by name, through
``base_arguments``, instead of listing them again)."""

import copy
import functools
import inspect

import numpy as np
import pytest
import torch as th
from conftest import TINY_NET
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_pgx.common.base import PGAlgorithm, SB3Arguments, accepted_arguments, base_arguments
from sb3_pgx.common.surrogate import SurrogateAlgorithm

#: A leaf that fixes one of SB3's arguments instead of taking it.
FIXED = {"NaturalPG": {"ent_coef": 0.0}}


def test_every_argument_reaches_sb3_or_stays_with_the_leaf(algo, monkeypatch):
    seen = {}
    original = OnPolicyAlgorithm.__init__

    @functools.wraps(original)  # keeps its signature, which base_arguments reads
    def recording_init(self, policy, env, **kwargs):
        seen.update(copy.deepcopy(kwargs))  # as given, before SB3 or the leaf changes them
        original(self, policy, env, **kwargs)

    monkeypatch.setattr(OnPolicyAlgorithm, "__init__", recording_init)
    given = {**algo.kwargs, "seed": 3, "stats_window_size": 7, "verbose": 0}
    model = algo.make("MlpPolicy", "CartPole-v1", **given)
    signature = inspect.signature(algo.cls.__init__).parameters
    parameters = {name: parameter for name, parameter in signature.items() if parameter.kind is not parameter.VAR_KEYWORD}
    defaults = {name: parameter.default for name, parameter in parameters.items()}
    expected = defaults | given | {"device": "cpu", "policy_kwargs": TINY_NET}
    sb3 = set(inspect.signature(original).parameters) - {"self", "policy", "env", "_init_setup_model"}
    for name in [*parameters, *given]:
        if name in sb3:
            assert seen[name] == expected[name], name
        elif name not in ("self", "policy", "env", "_init_setup_model"):
            assert hasattr(model, name), f"{algo.name}.{name} is neither handed to SB3 nor kept"
    for name, value in FIXED.get(algo.name, {}).items():
        assert name not in parameters and seen[name] == value
    assert seen["_init_setup_model"] is False  # the leaf builds the model once its own attributes are set
    assert model.policy is not None


def test_accepted_arguments_follow_the_bases_while_they_hand_kwargs_on():
    sb3 = set(inspect.signature(OnPolicyAlgorithm.__init__).parameters) - {"self"}
    workers = {"n_workers", "envs_per_worker", "ray_address", "asynchronous", "broadcast_interval", "max_inflight"}
    assert accepted_arguments(PGAlgorithm) == sb3 | {"normalize_advantage", "diagnostics_epsilon"} | workers
    assert accepted_arguments(SurrogateAlgorithm) == accepted_arguments(PGAlgorithm) | {
        "batch_size", "n_epochs", "clip_range_vf", "max_sgd_steps",
    }  # fmt: skip


def test_base_arguments_keep_only_what_the_base_takes():
    class Base:
        def __init__(self, a, b=2):
            self.a, self.b = a, b

    class Leaf(Base):
        def __init__(self, a=1, b=5, own=3):
            handed = base_arguments(locals())
            super().__init__(**handed)
            self.handed = handed

    assert Leaf(b=9).handed == {"a": 1, "b": 9}


def test_every_sb3_argument_is_explicit_typed_or_fixed(algo):
    """Each of ``OnPolicyAlgorithm``'s arguments is in the leaf's signature, among the typed
    ``SB3Arguments`` of its ``**kwargs``, or fixed by the suite; and a misspelt one is refused."""
    # Neither taken by SB3's own PPO and A2C: the action spaces are the suite's, the Monitor wrapper SB3's default.
    sb3 = set(inspect.signature(OnPolicyAlgorithm.__init__).parameters)
    sb3 -= {"self", "supported_action_spaces", "monitor_wrapper"}
    explicit = set(inspect.signature(algo.cls.__init__).parameters)
    assert set(SB3Arguments.__annotations__) <= sb3
    assert sb3 - explicit - set(SB3Arguments.__annotations__) == set(FIXED.get(algo.name, {}))
    with pytest.raises(TypeError, match="sed"):
        algo.make("MlpPolicy", "CartPole-v1", sed=1)


@pytest.mark.parametrize("share_features_extractor", [True, False], ids=["shared", "separate"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_evaluate_equals_sb3s_evaluate_actions(algo, env_id, share_features_extractor):
    """``PGAlgorithm.evaluate`` (one pass that keeps the distribution) gives what SB3's
    ``ActorCriticPolicy.evaluate_actions`` gives: values, log-probabilities and entropies."""
    policy_kwargs = dict(share_features_extractor=share_features_extractor)
    model = algo.make("MlpPolicy", env_id, policy_kwargs=policy_kwargs)
    model.policy.set_training_mode(False)
    observations = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(7)]))
    with th.no_grad():
        actions = model.policy.get_distribution(observations).get_actions()
        values, log_prob, entropy = model.policy.evaluate_actions(observations, actions)
        # SB3's policy reuses one distribution object: read each before the next pass.
        distribution, our_values = model.evaluate(observations)
        our_log_prob, our_entropy = distribution.log_prob(actions), distribution.entropy()
        first_rows, same_values = model.evaluate(observations, actor_rows=3)
        first_log_prob = first_rows.log_prob(actions[:3])
    assert th.allclose(our_values, values.flatten())
    assert th.allclose(our_log_prob, log_prob)
    assert th.allclose(our_entropy, entropy)
    # Rows beyond actor_rows ride along for their values only.
    assert th.equal(same_values, our_values)
    assert th.allclose(first_log_prob, log_prob[:3])
