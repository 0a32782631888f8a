"""Non-private training on synthetic hospitals gets close to the ground-truth model."""

from __future__ import annotations

import pandas as pd
from sklearn.metrics import roc_auc_score

from datasets_synthetic import generate_hospitals
from federation.training.features import FeatureEncoder, prepare_site_arrays, split_indices
from workbench.baselines import baseline_metrics


def test_pooled_non_private_model_reaches_the_ground_truth_auc():
    fed = generate_hospitals(sites=3, rows=3000, seed=11)
    encoder = FeatureEncoder.from_dictionary(dictionary=fed.dictionary)
    arrays, truth = {}, []
    for site, frame in fed.sites.items():
        arrays[site] = prepare_site_arrays(frame=frame, encoder=encoder, test_fraction=0.25, seed=43, site_id=site)
        _, test = split_indices(n_rows=len(frame), test_fraction=0.25, seed=43, site_id=site)
        rows = frame.iloc[test]
        truth.append(
            {
                "site": site,
                "truth_auc": roc_auc_score(rows[fed.dictionary.target], fed.truth.risk(rows, site)),
            }
        )
    table = baseline_metrics(arrays=arrays, model="mlp", hidden=32)
    assert isinstance(table, pd.DataFrame)
    assert set(table["model"]) == {"pooled (non-private)", "local only (non-private)"}
    pooled = table[table["model"] == "pooled (non-private)"].merge(pd.DataFrame(truth), on="site")
    assert (pooled["truth_auc"] > 0.7).all()
    # The same held-out rows, scored by the fitted model and by the true risk.
    gap = pooled["truth_auc"] - pooled["auc"]
    assert (gap < 0.04).all(), pooled[["site", "auc", "truth_auc"]]
