"""The node gate benchmark runs (quick sizes) and writes its tables; no figure is asserted."""

from __future__ import annotations

import sys

from benchmarks.node_gate import bench_gate


def test_the_benchmark_writes_both_tables(tmp_path, monkeypatch):
    results = tmp_path / "RESULTS.md"
    monkeypatch.setattr(sys, "argv", ["bench_gate", "--quick", "--results", str(results)])
    bench_gate.main()
    text = results.read_text()
    assert "| lines | file (MB) | append (ms) | append p90 (ms) | verify (s) | repeat scan (ms) |" in text
    assert "| 1,000 |" in text
    for case in (
        "bare handler, served",
        "serve, served",
        "serve, refused: project without allocation",
        "serve, refused: paused",
    ):
        assert f"| {case}" in text
