"""The growth benchmark: one tiny configuration measured in a child process, the
next estimated and not run, and the estimate extrapolates what was measured."""

from __future__ import annotations

import math

import pytest

from benchmarks.scale.run import estimate, main


def test_estimate_is_nan_before_two_measurements_then_linear():
    assert math.isnan(estimate(measured=[], sites=4, rows=10).seconds)
    measured = [
        {"total_rows": 100, "data_s": 1.0, "study_s": 9.0, "peak_tree_rss_mib": 1000.0},
        {"total_rows": 200, "data_s": 2.0, "study_s": 18.0, "peak_tree_rss_mib": 1100.0},
    ]
    guess = estimate(measured=measured, sites=4, rows=100)
    assert guess.seconds == pytest.approx(40.0)
    assert guess.memory_mib == pytest.approx(1300.0)


@pytest.mark.slow
def test_quick_run_measures_then_stops(tmp_path, capsys):
    out = tmp_path / "scale" / "RESULTS.md"
    assert main(["--quick", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 2 |")]
    assert len(rows) == 2
    assert "| measured |" in rows[0]
    peak_mib = float(rows[0].split("|")[8])
    assert peak_mib > 100  # the process tree held Python, torch and Ray
    assert "not run: above --max-total-rows" in rows[1]
