"""The rounds benchmark runs at its quick size: the workbench study and the bare
Flower app in one process, and the split written out."""

from __future__ import annotations

import pytest

from benchmarks.rounds.run import Timeline, main


def test_timeline_splits_round_one_into_engine_start():
    t = Timeline("x", total=30.0, to_round_one=2.0, rounds=(20.0, 1.0, 3.0, 1.0))
    assert t.per_round == 1.0  # median of the later rounds
    assert t.engine_start == 2.0 + 19.0
    assert t.end == 30.0 - 2.0 - 25.0


@pytest.mark.slow
def test_quick_run_writes_the_split(tmp_path, capsys):
    out = tmp_path / "rounds" / "RESULTS.md"
    assert main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| workbench study |" in text and "| bare Flower FedAvg |" in text
    assert "our layers (workbench round minus bare round)" in text
    assert out.with_suffix(".png").stat().st_size > 0
