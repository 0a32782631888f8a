"""A folder without a data dictionary: ranges come from a DP query charged at every site."""

from __future__ import annotations

import pytest

from datasets_synthetic import generate_hospitals
from privacy_budgets import Ledger
from workbench.study import run_study

pytestmark = pytest.mark.slow


def test_study_finds_ranges_privately_and_charges_them_within_the_target(tmp_path):
    fed = generate_hospitals(sites=2, rows=1500, seed=3)
    data = tmp_path / "data"
    data.mkdir()
    for site, frame in fed.sites.items():
        # text columns need a dictionary; numeric ones can be ranged by DP
        frame.drop(columns=["admission_type"]).to_csv(data / f"{site}.csv", index=False)
    lines: list[str] = []
    summary = run_study(
        data=data,
        out=tmp_path / "out",
        epsilon=1.0,
        rounds=2,
        target="cardiac_event",
        project="noranges",
        baselines=False,
        echo=lines.append,
    )
    assert summary["rounds_completed"] == 2
    for site in fed.sites:
        with Ledger.open(tmp_path / "out" / "sites" / site / "ledger.sqlite", site_id=site, create=False) as ledger:
            history = ledger.history()
            commits = history[history["kind"] == "commit"]
            ranges = commits[commits["purpose"].str.contains("range finding")]
            assert len(ranges) == 1, "one range query per site"
            assert '"GaussianDpEvent"' in ranges.iloc[0]["mechanism"] and "Poisson" not in ranges.iloc[0]["mechanism"]
            evaluations = commits[commits["purpose"].str.contains("federated evaluation")]
            assert len(evaluations) == 2, "one noisy evaluation per round"
            assert ledger.spent(dataset=site, project="noranges") <= 1.0 + 1e-9
    assert summary["epsilon_per_site"][site]["project"] == pytest.approx(1.0, abs=0.01)
