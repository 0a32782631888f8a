"""The ethics board's HTML report, opened in a real browser: it renders, with its plots.

The screenshot is kept as a test artifact in out/test-artifacts/ (or $TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from _webdriver import browser_missing, chromium_session

from privacy_budgets import Ledger, build_report
from privacy_budgets.mechanisms import dpsgd_event, gaussian_event

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ledger_with_history(tmp_path):
    with Ledger.open(tmp_path / "hospital_01.sqlite", site_id="hospital_01") as ledger:
        ledger.set_cap(dataset="cardio", epsilon=3.0, delta=1e-5, actor="site IT", reason="lifetime cap")
        ledger.allocate(dataset="cardio", project="study-a", epsilon=1.5, actor="ethics board", reason="EB-117")
        for round_ in range(1, 4):
            r = ledger.reserve(
                dataset="cardio",
                project="study-a",
                actor="coordinator",
                purpose=f"round {round_}",
                event=dpsgd_event(noise_multiplier=2.0, sampling_rate=0.05, steps=20),
                round=round_,
            )
            ledger.commit(r)
            ledger.record_uncovered(
                dataset="cardio",
                project="study-a",
                what="evaluation metrics",
                actor="coordinator",
                purpose="evaluation",
                round=round_,
            )
        q = ledger.reserve(
            dataset="cardio",
            project="study-a",
            actor="analyst",
            purpose="count",
            event=gaussian_event(noise_multiplier=10.0),
        )
        ledger.commit(q)
        yield ledger


def test_report_renders_with_its_plots_in_headless_chromium(ledger_with_history, tmp_path):
    reason = browser_missing()
    if reason:
        pytest.skip(f"no browser to open the report in: {reason}")
    report = build_report(ledger_with_history, out=tmp_path / "report.html")
    artifacts = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with chromium_session() as browser:
        browser.open(report.as_uri())
        images = browser.run(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
        )
        title = browser.run("return document.title;")
        text = browser.run("return document.body.innerText;")
        shot = browser.screenshot(artifacts / "ethics_board_report.png")
    assert "hospital_01" in title
    assert images, "the report shows its burn-down plots as images"
    assert all(complete and width > 100 and height > 100 for complete, width, height in images), images
    assert "verified" in text.lower() or "ok" in text.lower()
    assert "study-a" in text
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 500
    assert pixels[..., :3].std() > 0.05, "the screenshot is not a blank page"
