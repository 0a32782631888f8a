"""Synthetic hospitals from a public dictionary alone: within every stated range,
deterministic for a seed, and the outcome follows the stated prior (its direction)."""

from __future__ import annotations

import numpy as np

from benchmarks.heart_disease.data import FLAMBY_DICTIONARY
from benchmarks.heart_disease.tuning_rows import FLAMBY_SIZES, PRIOR_INTERCEPT, PUBLIC_PRIOR, synthetic_centres
from datasets_synthetic.from_dictionary import hospitals_from_dictionary


def _draw(seed: int):
    return hospitals_from_dictionary(
        dictionary=FLAMBY_DICTIONARY,
        sizes=FLAMBY_SIZES,
        target="heart_disease",
        coefficients=PUBLIC_PRIOR,
        intercept=PRIOR_INTERCEPT,
        seed=seed,
        derived={"num": "heart_disease"},
    )


def test_every_value_lies_in_the_dictionarys_public_ranges_and_sizes_are_as_stated():
    frames = _draw(0)
    assert {k: len(v) for k, v in frames.items()} == FLAMBY_SIZES
    for frame in frames.values():
        for column in FLAMBY_DICTIONARY.columns:
            if column.name not in frame:
                assert column.role == "id"
                continue
            values = frame[column.name]
            if column.kind in ("numeric", "integer"):
                assert values.min() >= column.minimum and values.max() <= column.maximum
            elif column.kind == "categorical":
                assert set(values) <= set(column.categories)
            else:
                assert set(values) <= {0, 1}


def test_deterministic_for_a_seed_and_the_prior_sets_the_direction():
    a, b, c = _draw(1), _draw(1), _draw(2)
    assert all(a[k].equals(b[k]) for k in a)
    assert not a["cleveland"].equals(c["cleveland"])
    pooled = np.concatenate([f["heart_disease"].to_numpy() for f in a.values()])
    exang = np.concatenate([f["exang"].to_numpy() for f in a.values()])
    assert 0.3 < pooled.mean() < 0.7
    assert pooled[exang == 1].mean() > pooled[exang == 0].mean() + 0.1  # coefficient 1.2 on the logit


def test_the_synthetic_centres_encode_like_the_real_ones():
    centres = synthetic_centres(seed=0)
    assert list(centres) == list(FLAMBY_SIZES)
    for name, c in centres.items():
        assert len(c.y_train) + len(c.y_test) == FLAMBY_SIZES[name]
        assert c.x_train.shape[1] == c.x_test.shape[1] > 10
