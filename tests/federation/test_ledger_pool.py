"""A site keeps its ledger open between messages; a replaced or deleted file is
opened again, and what it records is in the file for any other reader at once."""

from __future__ import annotations

import pytest

from federation.node.ledger_pool import close_all, site_ledger
from federation.node.site import SiteConfig
from privacy_budgets import Ledger


@pytest.fixture()
def site(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    yield SiteConfig(site_id="h1", data_path=tmp_path / "h1.csv", state_dir=state, dictionary_path=tmp_path / "d.json")
    close_all()


def _cap(ledger: Ledger, epsilon: float) -> None:
    ledger.set_cap(dataset="h1", epsilon=epsilon, delta=1e-5, actor="it", reason="test")


def test_same_ledger_between_messages_and_visible_to_others(site):
    with site_ledger(site) as first:
        _cap(first, 3.0)
    with site_ledger(site) as second:
        assert second is first
    # Another process's view (a fresh connection) sees the committed entry.
    with Ledger.open(site.ledger_path, site_id="h1") as other:
        assert other.cap(dataset="h1") == 3.0


def test_a_deleted_ledger_is_opened_again(site):
    with site_ledger(site) as first:
        _cap(first, 3.0)
    for path in site.state_dir.iterdir():
        if path.name.startswith("ledger.sqlite") and not path.name.endswith(".key"):
            path.unlink()
    with site_ledger(site) as again:
        assert again is not first
        assert again.cap(dataset="h1") is None  # a new, empty ledger, not the unlinked one
