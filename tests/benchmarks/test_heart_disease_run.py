"""The heart-disease benchmark runs end to end at its quick size (a benchmark, not a
timed test): one seed, one epsilon, DP rows through Flower with the sites' ledgers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.heart_disease.data import DEFAULT_FOLDER
from benchmarks.heart_disease.merge import BEGIN, write
from benchmarks.heart_disease.run import main


def test_absent_data_skips_with_a_reason(tmp_path, capsys):
    assert main(["--quick", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "R.md")]) == 2
    assert "heart-disease benchmark skipped" in capsys.readouterr().err
    assert not (tmp_path / "R.md").exists()


def test_unknown_families_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="families must be a non-empty subset"):
        main(["--quick", "--families", "synthetic,bogus", "--out", str(tmp_path / "R.md")])
    assert not (tmp_path / "R.md").exists()


@pytest.mark.skipif(
    not (DEFAULT_FOLDER / "processed.va.data").is_file(),
    reason=f"the UCI heart-disease files are not at {DEFAULT_FOLDER} on this machine",
)
def test_a_charged_search_that_cannot_fit_is_reported_and_stored_not_run(tmp_path):
    out, store = tmp_path / "R.md", tmp_path / "store"
    assert (
        main(["--quick", "--epsilons", "0.05", "--families", "charged", "--out", str(out), "--store", str(store)]) == 0
    )
    assert "total 0.05: **not run**, the plan was refused before anything ran" in out.read_text()
    (stored,) = store.glob("run-*.json")
    record = json.loads(stored.read_text())
    assert "does not fit" in record["refused"]["0.05"]
    assert [r["family"] for r in record["rows"]] == ["baseline"]  # nothing ran, nothing charged
    write(store=store, results=out)
    assert "| every candidate charged | 0.05 | **not run: plan refused** |" in out.read_text()


@pytest.mark.slow
@pytest.mark.skipif(
    not (DEFAULT_FOLDER / "processed.va.data").is_file(),
    reason=f"the UCI heart-disease files are not at {DEFAULT_FOLDER} on this machine",
)
def test_quick_run_writes_rows_with_ledger_epsilon(tmp_path, capsys):
    out = tmp_path / "heart" / "RESULTS.md"
    store = tmp_path / "store"
    assert main(["--quick", "--out", str(out), "--store", str(store)]) == 0
    text = out.read_text()
    assert out.with_suffix(".png").stat().st_size > 0
    for row in (
        "majority label (no training)",
        "| pooled |",
        "| local only |",
        "| FedAvg |",
        "DP-FedAvg + site intercept, eps 1, tuning not charged",
        "DP, tuned on synthetic hospitals (free), eps 1",
        "DP, tuned with every candidate charged, eps 1",
        "DP, two-stage: synthetic search keeps 2, both charged, eps 1",
    ):
        assert row in text
    for prefix in ("| DP-FedAvg", "| DP, tuned on synthetic", "| DP, tuned with every candidate", "| DP, two-stage"):
        dp_line = next(line for line in text.splitlines() if line.startswith(prefix))
        spent = float(dp_line.split("|")[4].split()[0])
        # The ledgers charge what ran: within the target, and the plan uses nearly all of it
        # (for the charged search: every candidate and the final training, composed).
        assert 0.9 < spent <= 1.0 + 2e-3, dp_line
    assert "tuning NOT charged" in text and "search + final, composed" in text
    assert "validation splits of the training rows" in text
    assert "**Headline (honest): at total epsilon 1" in text
    assert "FENDA-FL" in text and "638efb6" in text
    # The stored run merges into the report's all-epsilons section, once however often merged.
    (stored,) = store.glob("run-*.json")
    rows = {r["name"]: r for r in json.loads(stored.read_text())["rows"]}
    charged = rows["DP, tuned with every candidate charged, eps 1"]
    write(store=store, results=out)
    write(store=store, results=out)
    merged = out.read_text()
    assert merged.count(BEGIN) == 1
    line = next(x for x in merged.split(BEGIN)[1].splitlines() if x.startswith("| every candidate charged | 1 |"))
    assert f"{np.mean(charged['accuracy']):.3f}" in line and f"{max(charged['spent']):.3f}" in line
