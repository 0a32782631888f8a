"""The privacy-audit benchmark at its quick size: both engines under the claim, both broken
engines above it, RESULTS.md with its tables and plot, and its place in run_all."""

from __future__ import annotations

import pytest

from benchmarks.privacy_audit import run as audit_run
from benchmarks.privacy_audit.ideal import ideal_bounds, step_weights
from benchmarks.privacy_audit.report import needed_correct
from benchmarks.run_all import BENCHMARKS, section


def test_quick_run_catches_the_broken_engines_and_writes_results(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert audit_run.main(["--quick", "--out", str(out)]) == 0  # 0: broken caught, correct clean
    text = out.read_text()
    results = section(text=text, heading="Results")
    for engine in ("opacus", "vectorized"):
        for mechanism in ("correct", "noise off", "clipping off"):
            assert f"| {engine} | {mechanism} |" in results
    assert results.count("| YES |") == 4
    assert "![audit](RESULTS.png)" in results and out.with_suffix(".png").stat().st_size > 10_000
    assert "| 200 | 160 |" in section(text=text, heading="What the bound can and cannot show at this size")
    assert "ln(33.3) = 3.51" in text and "## Machine" in text


def test_run_all_registers_the_audit_with_sections_that_exist():
    bench = next(b for b in BENCHMARKS if b.name == "privacy_audit")
    assert bench.module == "benchmarks.privacy_audit.run" and bench.out_flag == "--out"
    assert set(bench.sections) <= {"Results", "What the bound can and cannot show at this size"}


def test_momentum_weights_and_the_ideal_audit_of_no_signal():
    assert step_weights(steps=4, steps_per_epoch=2, momentum=0.5).tolist() == [1.5, 1.0, 1.5, 1.0]
    # Noise so large the canaries are invisible: an exact implementation audits at 0.
    assert ideal_bounds(
        noise_multiplier=1e6, sampling_rate=0.1, steps=20, canaries=200, momentum=0.0, runs=3
    ).max() == pytest.approx(0.0, abs=0.3)


def test_needed_correct_is_the_first_count_over_the_claim():
    from federation.training.privacy_audit import epsilon_lower_bound

    v = needed_correct(canaries=1000, guesses=800, delta=1e-5, above=2.0, confidence=1 - 0.05 / 6)
    at = lambda k: epsilon_lower_bound(canaries=1000, guesses=800, correct=k, delta=1e-5, confidence=1 - 0.05 / 6)
    assert at(v) > 2.0 >= at(v - 1)
    assert needed_correct(canaries=10, guesses=4, delta=1e-5, above=2.0, confidence=0.95) is None
