"""Key rotation: the old key signs the handover to the new one, the new key proves it is
held, a board's quorum approves it, and everything signed before and after verifies
(issue 16). A rotation nobody approved, an old key after the rotation, and a handover to
a key nobody holds are each refused or detected, with what and where."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import DATASET, DELTA, PROJECT, SITE
from typer.testing import CliRunner

from privacy_budgets import Ledger, LedgerError, gaussian_event
from privacy_budgets.authority import AuthorityError
from privacy_budgets.cli import app
from privacy_budgets.keys import fingerprint, load_key, public_hex
from privacy_budgets.proposals import allocation_action, cap_action, rotation_action
from privacy_budgets.reconciliation import reconcile
from privacy_budgets.simulated_board import SimulatedBoard


def _receipt(ledger: Ledger) -> dict:
    r = ledger.reserve(
        dataset=DATASET, project=PROJECT, actor="a", event=gaussian_event(noise_multiplier=20.0), purpose="count"
    )
    return ledger.receipt(ledger.commit(r)).to_dict()


def test_a_rotated_key_signs_from_then_on_and_the_whole_history_verifies(ledger, ledger_path, tmp_path):
    old_public = ledger.public_key
    before = _receipt(ledger)
    entry = ledger.rotate_key(new_key_path=tmp_path / "new.key", actor="site IT", reason="yearly rotation")
    assert entry.kind == "rotate_key" and entry.details["old_public_key"] == old_public
    assert ledger.public_key == public_hex(load_key(key_path=tmp_path / "new.key")) != old_public
    after = _receipt(ledger)
    checkpoint = ledger.checkpoint()
    for pinned in (fingerprint(old_public), ledger.public_key_fingerprint):
        report = ledger.verify(public_key=pinned, checkpoint=checkpoint, receipts=[before, after], deep=True)
        assert report.ok, report
    assert reconcile(receipts=[before, after], ledger_export=ledger.export()).empty
    ledger.close()
    with pytest.raises(LedgerError, match=r"was rotated out of .*Pass key_path= to the current key"):
        Ledger.open(ledger_path, site_id=SITE)  # the old key, at its old place
    with Ledger.open(ledger_path, site_id=SITE, key_path=tmp_path / "new.key") as reopened:
        assert reopened.verify().ok and _receipt(reopened)["public_key"] == reopened.public_key


def test_with_a_board_a_rotation_needs_a_quorum(ledger_path, tmp_path):
    board = SimulatedBoard.create(tmp_path / "board")
    with Ledger.open(ledger_path, site_id=SITE) as ledger:
        board.establish(ledger)
        board.decide(ledger, action=cap_action(dataset=DATASET, epsilon=3.0, delta=DELTA), reason="policy")
        board.decide(ledger, action=allocation_action(dataset=DATASET, project=PROJECT, epsilon=1.0), reason="p")
        with pytest.raises(AuthorityError, match="rotating the ledger's signing key needs a proposal signed by 2"):
            ledger.rotate_key(new_key_path=tmp_path / "new.key", actor="site IT", reason="alone")
        new_public = public_hex(load_key(key_path=tmp_path / "new.key"))
        proposal = ledger.propose(
            action=rotation_action(new_public_key=new_public), reason="key rotation", proposed_by="site IT"
        )
        with pytest.raises(AuthorityError, match="needs signatures of 2 distinct members"):
            ledger.rotate_key(new_key_path=tmp_path / "new.key", proposal=board.sign(proposal, members=board.names[:1]))
        with pytest.raises(AuthorityError, match="does not rotate to the key at"):
            ledger.rotate_key(new_key_path=tmp_path / "other.key", proposal=board.sign(proposal))
        entry = ledger.rotate_key(new_key_path=tmp_path / "new.key", proposal=board.sign(proposal))
        assert entry.actor.startswith("board (2 of quorum 2)") and ledger.public_key == new_public
        _receipt(ledger)
        assert ledger.verify(deep=True).ok


def test_a_handover_to_a_key_nobody_holds_is_detected(ledger, tmp_path):
    """Someone holding the old key writes a rotation to a key whose holder never signed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stranger = public_hex(Ed25519PrivateKey.generate())
    with ledger._write() as conn:
        entry = ledger._append(
            conn,
            kind="rotate_key",
            actor="insider",
            purpose="takeover",
            details={"old_public_key": ledger.public_key, "new_public_key": stranger, "possession": "00" * 64},
        )
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == entry.seq
    assert "did not sign its takeover" in report.problem


def test_a_rotation_is_bound_to_its_ledger(ledger, ledger_path, tmp_path):
    """The new key's proof names the ledger: copied into another ledger it proves nothing."""
    entry = ledger.rotate_key(new_key_path=tmp_path / "new.key", actor="site IT", reason="rotation")
    with Ledger.open(tmp_path / "other.ledger", site_id=SITE) as other:
        with other._write() as conn:
            copied = other._append(
                conn,
                kind="rotate_key",
                actor="insider",
                purpose="copied",
                details={**entry.details, "old_public_key": other.public_key},
            )
        report = other.verify()
        assert not report.ok and report.first_bad_seq == copied.seq


def test_the_cli_rotates_in_place_and_keeps_the_old_key_retired(ledger, ledger_path):
    ledger.close()
    key = Path(f"{ledger_path}.key")
    old = fingerprint(public_hex(load_key(key_path=key)))
    done = CliRunner().invoke(
        app, ["rotate-key", "--ledger", str(ledger_path), "--actor", "site IT", "--reason", "yearly"]
    )
    assert done.exit_code == 0, done.output
    assert "re-register" not in done.output and "workbench budget handover --ledger" in done.output
    retired = list(ledger_path.parent.glob("*.retired-seq*"))
    assert len(retired) == 1 and fingerprint(public_hex(load_key(key_path=retired[0]))) == old
    with Ledger.open(ledger_path, site_id=SITE) as reopened:
        assert reopened.public_key_fingerprint != old and reopened.verify().ok
        assert dataclasses.asdict(reopened.entries()[-1])["kind"] == "rotate_key"
    verified = CliRunner().invoke(app, ["verify", "--ledger", str(ledger_path), "--public-key", old])
    assert verified.exit_code == 0, verified.output
