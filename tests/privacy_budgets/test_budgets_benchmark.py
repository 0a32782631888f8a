"""The ledger benchmark runs end to end at quick sizes (its figures are not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_benchmark_runs_quick(tmp_path):
    results = tmp_path / "RESULTS.md"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.ledger.bench_ledger", "--quick", "--results", str(results)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    text = results.read_text()
    assert "| entries | reserve, warm (ms) | warm p90 (ms) | reserve, cold (ms) |" in text
    assert "spends/s" in text and "rows/s" in text
