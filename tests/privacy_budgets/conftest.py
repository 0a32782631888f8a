"""Fixtures: real ledgers in real SQLite files under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from privacy_budgets import Ledger

SITE = "site_a"
DATASET = "hospital_01"
PROJECT = "quickstart"
DELTA = 1e-5


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "site_a.ledger"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    """A ledger with a cap of 3.0 on the dataset and an allocation of 1.0 for the project."""
    with Ledger.open(ledger_path, site_id=SITE) as opened:
        opened.set_cap(dataset=DATASET, epsilon=3.0, delta=DELTA, actor="site-admin", reason="site policy 2026")
        opened.allocate(
            dataset=DATASET, project=PROJECT, epsilon=1.0, actor="ethics-board", reason="protocol 12 approved"
        )
        yield opened
