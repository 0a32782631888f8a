"""The heart-disease benchmark runs end to end at its quick size (a benchmark, not a
timed test): one seed, one epsilon, DP rows through Flower with the sites' ledgers."""

from __future__ import annotations

import pytest

from benchmarks.heart_disease.data import DEFAULT_FOLDER
from benchmarks.heart_disease.run import main


def test_absent_data_skips_with_a_reason(tmp_path, capsys):
    assert main(["--quick", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "R.md")]) == 2
    assert "heart-disease benchmark skipped" in capsys.readouterr().err
    assert not (tmp_path / "R.md").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not (DEFAULT_FOLDER / "processed.va.data").is_file(),
    reason=f"the UCI heart-disease files are not at {DEFAULT_FOLDER} on this machine",
)
def test_quick_run_writes_rows_with_ledger_epsilon(tmp_path, capsys):
    out = tmp_path / "heart" / "RESULTS.md"
    assert main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert out.with_suffix(".png").stat().st_size > 0
    for row in (
        "majority label (no training)",
        "| pooled |",
        "| local only |",
        "| FedAvg |",
        "DP-FedAvg + site intercept, eps 1",
    ):
        assert row in text
    dp_line = next(line for line in text.splitlines() if line.startswith("| DP-FedAvg"))
    spent = float(dp_line.split("|")[4].split()[0])
    # The ledgers charge what ran: within the target, and the plan uses nearly all of it.
    assert 0.9 < spent <= 1.0 + 1e-6
    assert "validation splits of the training rows" in text
