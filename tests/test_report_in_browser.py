"""The ethics board's HTML report, opened in a real browser: it renders, with its plots,
leads with its projects, folds the entry table, and reads on a 1366 px laptop screen.

The screenshots are kept as test artifacts in out/test-artifacts/ (or $TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from _webdriver import browser_missing, chromium_session

from privacy_budgets import Ledger, build_report
from privacy_budgets.mechanisms import dpsgd_event, gaussian_event
from privacy_budgets.proposals import allocation_action, approval_action, cap_action
from privacy_budgets.signatures import generate_key_pair
from privacy_budgets.simulated_board import SimulatedBoard

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


# Each header cell's width inside its padding (clientWidth: whole pixels, hence a 1 px
# tolerance), and the width of its longest word in the cell's own font, with every
# <details> opened first (closed ones have no layout).
HEADER_WIDTHS = """
document.querySelectorAll('details').forEach(d => { d.open = true; });
const probe = document.createElement('span');
probe.style.position = 'absolute'; probe.style.visibility = 'hidden'; probe.style.whiteSpace = 'nowrap';
document.body.appendChild(probe);
const out = [];
for (const th of document.querySelectorAll('th')) {
  const style = getComputedStyle(th);
  for (const p of ['fontFamily', 'fontSize', 'fontWeight', 'fontStyle', 'letterSpacing']) probe.style[p] = style[p];
  let widest = 0, word = '';
  for (const w of th.textContent.split(/\\s+/).filter(Boolean)) {
    probe.textContent = w;
    const width = probe.getBoundingClientRect().width;
    if (width > widest) { widest = width; word = w; }
  }
  const inner = th.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  out.push([th.textContent, word, widest, inner]);
}
probe.remove();
return [out, window.innerWidth];
"""


@pytest.fixture
def board_ledger(tmp_path):
    """A site with a 2-of-3 board, two projects (one with approved researchers), rounds of
    training with their uncovered evaluation metrics, and a query."""
    board = SimulatedBoard.create(tmp_path / "board")
    ada = generate_key_pair(path=tmp_path / "ada", passphrase=None, comment="ada")
    with Ledger.open(tmp_path / "hospital_01.sqlite", site_id="hospital_01") as ledger:
        board.establish(ledger)
        board.decide(ledger, action=cap_action(dataset="cardio", epsilon=8.0, delta=1e-5), reason="lifetime cap")
        for project, epsilon in (("study-a", 4.0), ("survival-curves-2026", 2.0)):
            board.decide(
                ledger,
                action=allocation_action(dataset="cardio", project=project, epsilon=epsilon),
                reason=f"protocol EB-117 for {project}",
            )
        board.decide(
            ledger,
            action=approval_action(
                dataset="cardio",
                project="study-a",
                purpose="a cardiac risk model across four hospitals",
                researchers=[("Dr. Ada Lovelace-Byron", ada)],
            ),
            reason="EB-117 approved 2026-11-20",
        )
        for round_ in range(1, 6):
            r = ledger.reserve(
                dataset="cardio",
                project="study-a",
                actor="coordinator",
                purpose=f"FedAvg round {round_}",
                event=dpsgd_event(noise_multiplier=2.0, sampling_rate=0.05, steps=20),
                run_id="run-7f3a",
                round=round_,
            )
            ledger.commit(r)
            ledger.record_uncovered(
                dataset="cardio",
                project="study-a",
                what="evaluation metrics on held-out records",
                actor="coordinator",
                purpose="evaluation",
                run_id="run-7f3a",
                round=round_,
            )
        q = ledger.reserve(
            dataset="cardio",
            project="survival-curves-2026",
            actor="analyst",
            purpose="Kaplan-Meier curve",
            event=gaussian_event(noise_multiplier=30.0, count=20),
        )
        ledger.commit(q)
        yield ledger


def test_report_reads_on_a_laptop_screen_projects_first_entries_folded(board_ledger, tmp_path):
    reason = browser_missing()
    if reason:
        pytest.skip(f"no browser to open the report in: {reason}")
    report = build_report(board_ledger, out=tmp_path / "report.html")
    artifacts = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with chromium_session() as browser:
        browser.resize(width=1366, height=768)
        browser.open(report.as_uri())
        text = browser.run("return document.body.innerText;")
        folded = browser.run("return Array.from(document.querySelectorAll('details')).map(d => d.open);")
        browser.screenshot(artifacts / "ethics_board_report_1366.png")
        headers, width = browser.run(HEADER_WIDTHS)
    assert 1200 <= width <= 1366, width
    assert folded == [False], "the full entry table is folded"
    narrow = [(cell, word, round(need, 1), round(got, 1)) for cell, word, need, got in headers if got + 1 < need]
    assert not narrow, f"header cells narrower than their longest word at 1366 px: {narrow}"
    assert len(headers) > 20
    # Projects come first, each with its purpose, researchers, decisions and signers.
    assert text.index("Project study-a") < text.index("The board and its decisions") < text.index("Every entry (")
    assert "a cardiac risk model across four hospitals" in text and "Dr. Ada Lovelace-Byron" in text
    assert "Member A (simulated), Member B (simulated)" in text
    assert "model update (DP-SGD)" in text and "statistics, Gaussian noise" in text
    assert "evaluation metrics on held-out records" in text
    assert "Quorum: 2 of 3" in text


def test_report_sections_do_not_grow_with_rounds(board_ledger, tmp_path):
    def visible_rows(path):
        page = path.read_text()
        return page[: page.index("<details>")].count("<tr")

    before = visible_rows(build_report(board_ledger, out=tmp_path / "before.html"))
    for round_ in range(6, 16):
        r = board_ledger.reserve(
            dataset="cardio",
            project="study-a",
            actor="coordinator",
            purpose=f"FedAvg round {round_}",
            event=dpsgd_event(noise_multiplier=2.0, sampling_rate=0.05, steps=20),
            run_id="run-7f3a",
            round=round_,
        )
        board_ledger.commit(r)
    assert visible_rows(build_report(board_ledger, out=tmp_path / "after.html")) == before
