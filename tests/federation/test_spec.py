import math

import pytest

from federation.protocol.spec import SpecError, TrainingSpec


def test_spec_round_trips_through_a_flat_config():
    spec = TrainingSpec(
        project="quickstart", target_epsilon=1.0, rounds=5, strategy="fedyogi", hidden=16, engine="vectorized"
    )
    config = spec.to_config()
    assert all(k.startswith("spec-") and "_" not in k for k in config)
    assert TrainingSpec.from_config({**config, "server-round": 3, "other": "x"}) == spec


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("target_epsilon", -1.0, r"target_epsilon must be a positive number.*got -1.0"),
        ("target_epsilon", math.nan, r"target_epsilon must be a positive number"),
        ("rounds", 0, r"rounds must be a whole number >= 1; got 0"),
        ("delta", 1.5, r"delta must be a probability"),
        ("model", "resnet", r"model must be one of mlp, logreg; got 'resnet'"),
        ("strategy", "fedsgd", r"strategy must be one of fedavg, fedadam, fedyogi"),
        ("project", "my study!", r"project must be a name of letters"),
        ("engine", "fast", r"engine must be 'opacus' \(the reference\) or 'vectorized'"),
    ],
)
def test_bad_parameters_are_refused_with_the_rule_and_the_value(field, value, message):
    kwargs = {"project": "p", "target_epsilon": 1.0, "rounds": 2, field: value}
    with pytest.raises(SpecError, match=message):
        TrainingSpec(**kwargs)


def test_opacus_ew_mode_is_refused_because_it_crashes_on_an_empty_poisson_batch():
    with pytest.raises(SpecError, match="grad_sample_mode must be one of hooks, ghost, functorch"):
        TrainingSpec(project="p", target_epsilon=1.0, rounds=1, grad_sample_mode="ew")
