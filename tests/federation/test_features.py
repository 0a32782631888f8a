import numpy as np
import pandas as pd
import pytest

from federation.training.features import FeatureEncoder, FeatureSpec, split_indices

ENCODER = FeatureEncoder(
    target="y",
    features=(
        FeatureSpec("age", "numeric", 20.0, 80.0, 50.0, missing_indicator=True),
        FeatureSpec("smoker", "binary", fill=0.0),
        FeatureSpec("kind", "categorical", categories=("a", "b")),
    ),
)


def test_encoding_uses_public_constants_only():
    frame = pd.DataFrame({"age": [20.0, 50.0, None, 200.0], "smoker": [1, 0, 1, 0], "kind": ["b", "a", None, "a"]})
    x = ENCODER.encode(frame)
    assert ENCODER.feature_names == ["age", "age missing", "smoker", "kind=a", "kind=b"]
    np.testing.assert_allclose(
        x,
        [[0, 0, 1, 0, 1], [0.5, 0, 0, 1, 0], [0.5, 1, 1, 0, 0], [1, 0, 0, 1, 0]],
    )
    # The same rows at another site with a different distribution encode identically:
    # nothing depends on the frame's own statistics.
    np.testing.assert_allclose(ENCODER.encode(frame.iloc[[3, 0]]), x[[3, 0]])


def test_encoder_travels_as_json():
    assert FeatureEncoder.from_json(ENCODER.to_json()) == ENCODER


def test_a_missing_study_column_names_the_column():
    with pytest.raises(KeyError, match="column 'kind' is in the study's feature list"):
        ENCODER.encode(pd.DataFrame({"age": [1.0], "smoker": [0]}))


def test_splits_are_deterministic_per_site_and_disjoint():
    train, test = split_indices(n_rows=100, test_fraction=0.25, seed=43, site_id="a")
    assert len(test) == 25 and not set(train) & set(test) and len(train) + len(test) == 100
    again = split_indices(n_rows=100, test_fraction=0.25, seed=43, site_id="a")
    other = split_indices(n_rows=100, test_fraction=0.25, seed=43, site_id="b")
    assert (again[1] == test).all() and not (other[1] == test).all()
