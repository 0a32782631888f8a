"""The key handover a coordinator follows after a site rotates its ledger key (issue 16:
"the old key signs the new one, a quorum approves, the coordinator re-registers it").
A new key is accepted only when it chains from the key the coordinator registered; a
handover signed by another key, one without the board's quorum, a board-less rotation, an
altered entry, a key nobody holds: each refused, naming the rule and the entry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import DATASET, DELTA, PROJECT, SITE
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from privacy_budgets import Ledger
from privacy_budgets.cli import app
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.handover import HandoverRefused, follow_handover, key_handover
from privacy_budgets.keys import load_key, load_or_create_key, public_hex, sign
from privacy_budgets.proposals import allocation_action, cap_action, rotation_action
from privacy_budgets.simulated_board import SimulatedBoard


def _rotate(ledger: Ledger, board: SimulatedBoard, new_key: Path, *, members: list[str] | None = None):
    new_public = public_hex(load_or_create_key(key_path=new_key, create=True))
    proposal = ledger.propose(action=rotation_action(new_public_key=new_public), reason="rotation", proposed_by="IT")
    return ledger.rotate_key(new_key_path=new_key, proposal=board.sign(proposal, members=members))


@pytest.fixture
def governed(ledger_path, tmp_path):
    """A ledger with a two-of-three board, its cap and allocation decided by the quorum."""
    board = SimulatedBoard.create(tmp_path / "board")
    with Ledger.open(ledger_path, site_id=SITE) as ledger:
        board.establish(ledger)
        board.decide(ledger, action=cap_action(dataset=DATASET, epsilon=3.0, delta=DELTA), reason="policy")
        board.decide(ledger, action=allocation_action(dataset=DATASET, project=PROJECT, epsilon=1.0), reason="p")
        yield ledger, board


def _resign(entry: LedgerEntry, key: Ed25519PrivateKey, **changes) -> dict:
    """``entry`` changed and signed again, as whoever holds ``key`` would."""
    changed = dataclasses.replace(entry, **changes)
    changed = dataclasses.replace(changed, entry_hash=changed.compute_hash())
    return dataclasses.replace(changed, signature=sign(key, changed.signed_message())).to_dict()


def test_a_quorum_approved_rotation_chains_from_the_registered_key(governed, tmp_path):
    ledger, board = governed
    registered = ledger.public_key
    entry = _rotate(ledger, board, tmp_path / "new.key")
    handover = json.loads(json.dumps(key_handover(ledger.entries())))  # as sent: a JSON file
    accepted = follow_handover(handover, site_id=SITE, registered_key=registered)
    assert accepted.new_key == ledger.public_key != registered
    (step,) = accepted.steps
    assert step.seq == entry.seq and step.signers == board.names[:2]
    with pytest.raises(HandoverRefused, match="still signed by the registered key"):
        follow_handover(handover, site_id=SITE, registered_key=ledger.public_key)
    with pytest.raises(HandoverRefused, match="of site 'site_a', not 'hospital_02'"):
        follow_handover(handover, site_id="hospital_02", registered_key=registered)


def test_several_rotations_are_followed_from_wherever_the_coordinator_stands(governed, tmp_path):
    ledger, board = governed
    first = ledger.public_key
    _rotate(ledger, board, tmp_path / "second.key")
    second = ledger.public_key
    _rotate(ledger, board, tmp_path / "third.key", members=board.names[1:])
    handover = key_handover(ledger.entries())
    from_first = follow_handover(handover, site_id=SITE, registered_key=first)
    assert [s.new_key for s in from_first.steps] == [second, ledger.public_key]
    assert from_first.steps[1].signers == board.names[1:]
    assert [s.new_key for s in follow_handover(handover, site_id=SITE, registered_key=second).steps] == [
        ledger.public_key
    ]


def test_a_handover_that_does_not_start_at_the_registered_key_is_refused(governed, tmp_path):
    ledger, board = governed
    _rotate(ledger, board, tmp_path / "new.key")
    someone_else = public_hex(Ed25519PrivateKey.generate())
    with pytest.raises(HandoverRefused, match="No rotation in this handover hands over from site site_a's registered"):
        follow_handover(key_handover(ledger.entries()), site_id=SITE, registered_key=someone_else)


def test_a_rotation_entry_forged_or_altered_is_refused(governed, tmp_path):
    ledger, board = governed
    registered = ledger.public_key
    entry = _rotate(ledger, board, tmp_path / "new.key")
    handover = key_handover(ledger.entries())
    rotation = handover["rotations"][0]

    # An outsider's own key takes the new key's place and signs the entry itself.
    outsider = Ed25519PrivateKey.generate()
    details = {**entry.details, "new_public_key": public_hex(outsider)}
    rotation["entry"] = _resign(entry, outsider, details_json=json.dumps(details, sort_keys=True))
    with pytest.raises(HandoverRefused, match=f"seq {entry.seq} of site site_a is not signed by the registered key"):
        follow_handover(handover, site_id=SITE, registered_key=registered)

    # The entry edited after it was signed (its hash no longer matches).
    rotation["entry"] = {**entry.to_dict(), "purpose": "edited"}
    with pytest.raises(HandoverRefused, match="was altered"):
        follow_handover(handover, site_id=SITE, registered_key=registered)


def test_the_old_key_alone_cannot_make_a_rotation_the_coordinator_accepts(governed, tmp_path):
    """An insider holding the old key (the node's service account) rewrites the rotation:
    one member's signature instead of the quorum, or a new key whose holder never signed."""
    ledger, board = governed
    registered = ledger.public_key
    old_key = load_key(key_path=Path(f"{ledger.path}.key"))
    entry = _rotate(ledger, board, tmp_path / "new.key")
    handover = key_handover(ledger.entries())
    details = entry.details
    one = {**details["authority"], "signatures": details["authority"]["signatures"][:1]}
    handover["rotations"][0]["entry"] = _resign(
        entry, old_key, details_json=json.dumps({**details, "authority": one}, sort_keys=True)
    )
    with pytest.raises(HandoverRefused, match="not approved by the board's quorum: it needs signatures of 2"):
        follow_handover(handover, site_id=SITE, registered_key=registered)

    stranger = public_hex(Ed25519PrivateKey.generate())
    handover["rotations"][0]["entry"] = _resign(
        entry, old_key, details_json=json.dumps({**details, "new_public_key": stranger}, sort_keys=True)
    )
    with pytest.raises(HandoverRefused, match="did not sign its takeover"):
        follow_handover(handover, site_id=SITE, registered_key=registered)


def test_a_rotation_without_a_board_is_refused_at_the_coordinator(ledger, tmp_path):
    registered = ledger.public_key
    ledger.rotate_key(new_key_path=tmp_path / "new.key", actor="site IT", reason="alone")
    with pytest.raises(HandoverRefused, match="made without an ethics board"):
        follow_handover(key_handover(ledger.entries()), site_id=SITE, registered_key=registered)


def test_the_cli_writes_the_handover_and_refuses_a_ledger_never_rotated(governed, ledger_path, tmp_path):
    ledger, board = governed
    runner = CliRunner()
    never = runner.invoke(app, ["handover", "--ledger", str(ledger_path), "--out", str(tmp_path / "h.json")])
    assert never.exit_code == 2 and "was never rotated" in never.output
    registered = ledger.public_key
    _rotate(ledger, board, tmp_path / "new.key")
    done = runner.invoke(app, ["handover", "--ledger", str(ledger_path), "--out", str(tmp_path / "h.json")])
    assert done.exit_code == 0, done.output
    assert "workbench coordinator accept-ledger-key --name site_a" in done.output
    accepted = follow_handover(json.loads((tmp_path / "h.json").read_text()), site_id=SITE, registered_key=registered)
    assert accepted.new_key == ledger.public_key
    shown = json.loads(runner.invoke(app, ["board", "--ledger", str(ledger_path), "--json"]).output)
    assert shown["ledger_key"] == ledger.public_key  # the key that signs now, for a first registration
