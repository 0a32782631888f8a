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
from privacy_budgets.authority import authority_details, tally
from privacy_budgets.board import Board
from privacy_budgets.board_pin import BoardPin
from privacy_budgets.cli import app
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.handover import HandoverRefused, follow_handover, key_handover
from privacy_budgets.keys import load_key, load_or_create_key, public_hex, rotation_message, sign
from privacy_budgets.proposals import allocation_action, board_action, cap_action, rotation_action
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


def _pin(ledger: Ledger) -> BoardPin:
    """The board as the coordinator pins it: from `budget board --json` (members' keys included)."""
    shown = CliRunner().invoke(app, ["board", "--ledger", str(ledger.path), "--json"])
    assert shown.exit_code == 0, shown.output
    return BoardPin.from_listing(json.loads(shown.output))


def test_with_a_pinned_board_the_old_key_and_a_board_of_its_own_are_refused(governed, tmp_path):
    """The insider of A6: holding the old ledger key alone, they rewrite the rotation to a key
    of their own, "approved" by two keys of their own stated as the board, all signed with
    the old key. Unpinned, the handover's stated board counts (the hole); pinned, refused."""
    ledger, board = governed
    registered, pinned = ledger.public_key, _pin(ledger)
    old_key = load_key(key_path=Path(f"{ledger.path}.key"))
    entry = _rotate(ledger, board, tmp_path / "new.key")
    insider = SimulatedBoard.create(tmp_path / "insider", names=("Mallory", "Mallory's friend"))
    mallory = Ed25519PrivateKey.generate()
    action = rotation_action(new_public_key=public_hex(mallory))
    proposal = insider.sign(ledger.propose(action=action, reason="rotation", proposed_by="IT"))
    counted = tally(proposal, board=insider.roster())
    ledger_id = ledger.entries()[0].entry_hash
    proof = rotation_message(ledger_id=ledger_id, old_public_key=registered, new_public_key=public_hex(mallory))
    details = {
        **entry.details,
        "new_public_key": public_hex(mallory),
        "possession": sign(mallory, proof),
        "authority": authority_details(proposal, counted),
    }
    handover = key_handover(ledger.entries())
    handover["rotations"][0] = {
        "entry": _resign(entry, old_key, actor=counted.actor(), details_json=json.dumps(details, sort_keys=True)),
        "board": insider.roster().to_json(),
    }
    assert follow_handover(handover, site_id=SITE, registered_key=registered).new_key == public_hex(mallory)
    with pytest.raises(HandoverRefused, match="not the board pinned here .2 of 3: Member A") as refused:
        follow_handover(handover, site_id=SITE, registered_key=registered, pinned=pinned)
    assert "Nothing was changed" in str(refused.value) and "register-node --board" in str(refused.value)

    # A board entry of their own, signed by the old key, does not become the pinned board either.
    own_board = insider.sign(
        ledger.propose(action=board_action(board=insider.roster()), reason="rotation", proposed_by="IT")
    )
    authority = authority_details(own_board, tally(own_board, board=insider.roster()))
    board_entry = _resign(
        entry,
        old_key,
        kind="board",
        seq=entry.seq - 1,
        actor=counted.actor(),
        details_json=json.dumps({**insider.roster().to_json(), "authority": authority}, sort_keys=True),
    )
    handover["board_entries"].append(board_entry)
    with pytest.raises(HandoverRefused, match="without the approval of the pinned board's quorum"):
        follow_handover(handover, site_id=SITE, registered_key=registered, pinned=pinned)


def test_a_rotation_and_a_board_change_approved_by_the_pinned_board_are_followed(governed, tmp_path):
    ledger, board = governed
    registered, pinned = ledger.public_key, _pin(ledger)
    _rotate(ledger, board, tmp_path / "new.key")
    honest = follow_handover(key_handover(ledger.entries()), site_id=SITE, registered_key=registered, pinned=pinned)
    assert honest.new_key == ledger.public_key and honest.steps[0].signers == board.names[:2]
    assert honest.pinned == pinned and honest.board_changes == ()

    # The pinned board's quorum replaces Member C by Member D (who signs too), then D and A rotate.
    newcomer = SimulatedBoard.create(tmp_path / "newcomer", names=("Member D",), quorum=1)
    roster = Board(members=(*board.roster().members[:2], *newcomer.roster().members), quorum=2)
    proposal = ledger.propose(action=board_action(board=roster), reason="C leaves", proposed_by="IT")
    change = ledger.apply(newcomer.sign(board.sign(proposal)))
    second = ledger.public_key
    new_public = public_hex(load_or_create_key(key_path=tmp_path / "third.key", create=True))
    rotation = ledger.propose(action=rotation_action(new_public_key=new_public), reason="again", proposed_by="IT")
    rotation = newcomer.sign(board.sign(rotation, members=board.names[:1]))
    ledger.rotate_key(new_key_path=tmp_path / "third.key", proposal=rotation)
    followed = follow_handover(key_handover(ledger.entries()), site_id=SITE, registered_key=second, pinned=pinned)
    assert followed.new_key == new_public and followed.steps[0].signers == ["Member A (simulated)", "Member D"]
    (board_change,) = followed.board_changes
    assert board_change.seq == change.seq and board_change.signers == board.names[:2]
    assert followed.pinned.since_seq == change.seq and followed.pinned.board.describe() == roster.describe()
