"""The deployment benchmark's code, at a small size, on the shared loopback federation."""

from __future__ import annotations

import pytest

from benchmarks.deployment.run import FAST, run

pytestmark = pytest.mark.slow


def test_benchmark_measures_rounds_and_splits_out_the_sites_work(loopback, tmp_path):
    out = tmp_path / "RESULTS.md"
    (result,) = run(out=out, rounds=2, variants=("fast",), federation=loopback, command="pytest")
    assert result.name == FAST
    assert len(result.round_seconds) == 2 and all(s > 0 for s in result.round_seconds)
    # The sites' work is measured from the executors' logs and is part of the round.
    assert result.site_work is not None and 0 < result.training <= result.site_work
    assert all(site <= wall for site, wall in zip(result.site_seconds, result.round_seconds, strict=False))
    text = out.read_text()
    assert f"| {FAST} | {result.per_round:.2f} | {result.steady:.2f} |" in text
    assert loopback.coordinator.running_pid() is not None  # the shared federation keeps running
