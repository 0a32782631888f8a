"""Opt-in per-site intercept and fixed split: the offset stays at the site, is trained
by the same DP-SGD steps, and a split column must hold only train/test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from federation.protocol.spec import SpecError, TrainingSpec
from federation.site.site_config import SiteConfig
from federation.site.site_parameters import keep_site_parameters, load_offset, with_site_parameters
from federation.training.dp_sgd import train_round
from federation.training.features import FeatureEncoder, FeatureSpec, prepare_site_arrays
from federation.training.models import SiteOffset, build_model


def _site(tmp_path) -> SiteConfig:
    return SiteConfig(
        site_id="a", data_path=tmp_path / "a.csv", state_dir=tmp_path / "state", dictionary_path=tmp_path / "d.json"
    )


def _spec(**kw) -> TrainingSpec:
    return TrainingSpec(project="p", target_epsilon=1.0, rounds=3, engine="vectorized", site_offset=True, **kw)


def test_site_offset_needs_the_vectorized_engine():
    with pytest.raises(SpecError, match="'vectorized' when site_offset is on"):
        TrainingSpec(project="p", target_epsilon=1.0, rounds=1, site_offset=True)


def test_spec_round_trips_the_new_options():
    spec = _spec(init_seed=7)
    assert TrainingSpec.from_config(spec.to_config()) == spec


def test_offset_is_kept_at_the_site_and_only_shared_weights_leave(tmp_path):
    site, spec = _site(tmp_path), _spec()
    shared = build_model(name="logreg", n_features=3)
    model = with_site_parameters(model=shared, site=site, spec=spec)
    assert isinstance(model, SiteOffset) and float(model.offset.detach()) == 0.0
    # Every row positive: DP-SGD (no noise here) pushes the site's intercept up.
    x = np.random.default_rng(0).random((64, 3), dtype=np.float32)
    y = np.ones(64, dtype=np.float32)
    outcome = train_round(
        model=model,
        x=x,
        y=y,
        noise_multiplier=0.0,
        max_grad_norm=1.0,
        batch_size=16,
        local_epochs=2,
        learning_rate=0.5,
        engine="vectorized",
    )
    sent = keep_site_parameters(state=outcome.state_dict, site=site, spec=spec)
    assert set(sent) == set(shared.state_dict())  # exactly the shared model's keys
    kept = load_offset(site=site, spec=spec)
    assert kept > 0.0 and kept == pytest.approx(float(outcome.state_dict["offset"]))
    # The next round starts from the kept offset.
    again = with_site_parameters(model=build_model(name="logreg", n_features=3), site=site, spec=spec)
    assert float(again.offset.detach()) == pytest.approx(kept)
    # Another run of the project starts from zero.
    other = TrainingSpec(**{**spec.__dict__, "run_id": "other"})
    assert load_offset(site=site, spec=other) == 0.0


def test_without_the_option_nothing_changes(tmp_path):
    site = _site(tmp_path)
    spec = TrainingSpec(project="p", target_epsilon=1.0, rounds=1)
    model = build_model(name="logreg", n_features=2)
    assert with_site_parameters(model=model, site=site, spec=spec) is model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert keep_site_parameters(state=state, site=site, spec=spec) is state
    assert not (tmp_path / "state").exists()


def test_offset_shifts_the_logit():
    shared = torch.nn.Linear(2, 1)
    x = torch.ones(4, 2)
    assert torch.allclose(SiteOffset(shared=shared, offset=1.5)(x), shared(x) + 1.5)


ENCODER = FeatureEncoder(target="y", features=(FeatureSpec("v", "numeric", 0.0, 10.0, 5.0),))


def test_split_column_fixes_train_and_test():
    frame = pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1], "s": ["train", "test", "train", "test"]})
    arrays = prepare_site_arrays(frame=frame, encoder=ENCODER, test_fraction=0.5, seed=0, site_id="a", split_column="s")
    np.testing.assert_allclose(arrays.x_train.ravel(), [0.1, 0.3])
    np.testing.assert_allclose(arrays.x_test.ravel(), [0.2, 0.4])


def test_split_column_errors_name_the_rule():
    frame = pd.DataFrame({"v": [1.0, 2.0], "y": [0, 1], "s": ["train", "valid"]})
    with pytest.raises(ValueError, match=r"only 'train' or 'test'; found \['valid'\]"):
        prepare_site_arrays(frame=frame, encoder=ENCODER, test_fraction=0.5, seed=0, site_id="a", split_column="s")
    with pytest.raises(KeyError, match="lacks it|which site a's data lacks"):
        prepare_site_arrays(frame=frame, encoder=ENCODER, test_fraction=0.5, seed=0, site_id="a", split_column="z")
