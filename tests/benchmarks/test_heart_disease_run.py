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
        "DP-FedAvg + site intercept, eps 1, tuning not charged",
        "DP, tuned on synthetic hospitals (free), eps 1",
        "DP, tuned with every candidate charged, eps 1",
    ):
        assert row in text
    for prefix in ("| DP-FedAvg", "| DP, tuned on synthetic", "| DP, tuned with every candidate"):
        dp_line = next(line for line in text.splitlines() if line.startswith(prefix))
        spent = float(dp_line.split("|")[4].split()[0])
        # The ledgers charge what ran: within the target, and the plan uses nearly all of it
        # (for the charged search: every candidate and the final training, composed).
        assert 0.9 < spent <= 1.0 + 2e-3, dp_line
    assert "tuning NOT charged" in text and "search + final, composed" in text
    assert "validation splits of the training rows" in text
    assert "**Headline (honest): at total epsilon 1" in text
    assert "FENDA-FL" in text and "638efb6" in text
