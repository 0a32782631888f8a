"""The DP-overhead benchmark runs end to end on a small size (a benchmark, not a timed test)."""

import re

from benchmarks.dp_overhead.run import main
from benchmarks.dp_overhead.variants import VARIANTS


def test_quick_benchmark_writes_the_table_and_the_plot(tmp_path, capsys):
    out = tmp_path / "bench" / "RESULTS.md"
    assert main(["--quick", "--out", str(out)]) == 0

    text = out.read_text()
    private = [v.name for v in VARIANTS if v.private]
    header = "| model | batch | threads | non-private ms | " + " | ".join(private) + " |"
    assert header in text
    # A configuration disturbed by other work on the machine is flagged beside its baseline.
    rows = re.findall(
        r"^\| (demo|mlp-20-64-64-2) \| 128 \| 1 \| ([0-9.]+)(?: \(disturbed: x[0-9.]+\))? \|(.*)\|$", text, flags=re.M
    )
    assert {r[0] for r in rows} == {"demo", "mlp-20-64-64-2"}
    for _, baseline_ms, cells in rows:
        assert float(baseline_ms) > 0
        ratios = [c.strip() for c in cells.split("|")]
        assert len(ratios) == len(private)
        assert all(re.fullmatch(r"[0-9.]+x|fails", c) for c in ratios)
    assert "vectorized" in text and "## Variants that fail here" in text and "nproc" in text
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert header in capsys.readouterr().out  # the table is printed too
