"""run_all: each benchmark in its own process, a summary that quotes their tables."""

from __future__ import annotations

from benchmarks.run_all import BENCHMARKS, main, section, total_budget_min


def test_section_takes_one_heading_body():
    text = "# T\n\n## A\n\nalpha\n\n## B\n\nbeta ![p](RESULTS.png)\n"
    assert section(text=text, heading="A") == "alpha"
    assert section(text=text, heading="B") == "beta ![p](RESULTS.png)"
    assert section(text=text, heading="C") == ""


def test_quick_ledger_only_writes_the_summary(tmp_path):
    assert main(["--quick", "--only", "ledger", "--out-dir", str(tmp_path)]) == 0
    summary = (tmp_path / "RESULTS.md").read_text()
    assert "| ledger |" in summary and "| ok |" in summary
    # The stated budget: the sum of every benchmark's, and the ledger's own in its row.
    assert (
        f"Stated time budget of the full run (`make bench`) on 2 shared cores: {total_budget_min():g} minutes"
        in summary
    )
    assert total_budget_min() == sum(b.budget_min for b in BENCHMARKS) > 0
    ledger = next(b for b in BENCHMARKS if b.name == "ledger")
    assert f"| {ledger.budget_min:g} | [ledger/RESULTS.md]" in summary
    assert "### Check-and-reserve on one dataset" in summary
    assert "- cores:" in summary and "- flwr:" in summary and "load average" in summary
    assert (tmp_path / "ledger" / "RESULTS.md").exists()


def test_missing_heart_data_is_reported_not_failed(tmp_path):
    assert (
        main(["--quick", "--only", "heart_disease", "--out-dir", str(tmp_path), "--data", str(tmp_path / "absent")])
        == 0
    )
    summary = (tmp_path / "RESULTS.md").read_text()
    assert "heart-disease benchmark skipped" in summary
    assert "Not available" in summary


def test_summarise_quotes_results_already_there(tmp_path):
    folder = tmp_path / "scale"
    folder.mkdir()
    (folder / "RESULTS.md").write_text("# Growth\n\n## Results\n\n| sites |\n| --- |\n| 4 |\n\n## Other\n\nx\n")
    assert main(["--summarise", "--out-dir", str(tmp_path)]) == 0
    summary = (tmp_path / "RESULTS.md").read_text()
    assert "not rerun by this command" in summary
    assert "### Results\n\n| sites |\n| --- |\n| 4 |" in summary
    assert "| heart_disease |" not in summary  # nothing there, nothing claimed
