"""Key rotation at the coordinator (issue 16, item 2): a site's board rotates its ledger
key (two of three sign, the old key signs the new one); the coordinator refuses receipts
under the new key until its operator accepts the site's handover, accepts it only when it
chains from the registered key, and refuses the old key from then on. Real site replies,
a real coordinator folder and its nodes.json, the real CLIs."""

from __future__ import annotations

import json
import os

import pytest
from _node_helpers import PROJECT, received
from typer.testing import CliRunner

from federation.analytics.query import Query
from federation.coordinator.cli import app as coordinator_app
from federation.coordinator.registry import RegisteredNode, ledger_keys, registered_nodes, save_nodes, site_names
from federation.coordinator.reply_check import SiteRegistry, checked
from federation.coordinator.superlink import Coordinator
from federation.protocol.query_request import QueryRequest
from federation.site.ledger_keys import open_site_ledger
from federation.site.tasks import serve
from privacy_budgets.board_pin import BoardPin
from privacy_budgets.cli import app as budget_app
from privacy_budgets.keys import load_or_create_key, public_hex
from privacy_budgets.proposals import rotation_action
from privacy_budgets.simulated_board import SimulatedBoard

NODE = 7  # the node id the SuperLink authenticated (the reply's src_node_id)
runner = CliRunner()


def _answer(node, epsilon: float):
    request = QueryRequest(query=Query(kind="count", epsilon=epsilon), project=PROJECT).to_config()
    return serve(
        kind="query:count", msg=received(request, message_id=f"q{epsilon}"), site=node.site, node_toml=node.toml
    )


def _registry(coordinator: Coordinator) -> SiteRegistry:
    return SiteRegistry(names=site_names(coordinator), ledger_keys=ledger_keys(coordinator))


@pytest.fixture
def registered(node, tmp_path):
    """hospital-a with a two-of-three board, registered at a coordinator with its ledger key
    and its board pinned from `budget board --json` (as `register-node --board` reads it;
    Flower's admission is not what these tests are about, so nodes.json is written here)."""
    board = SimulatedBoard.create(tmp_path / "board")
    with open_site_ledger(node.site) as ledger:
        board.establish(ledger)
    listing = tmp_path / "board.json"
    shown = runner.invoke(budget_app, ["board", "--ledger", str(node.site.ledger_path), "--json"])
    listing.write_text(shown.output)
    pin, key = BoardPin.load_listing(listing)
    coordinator = Coordinator.init(folder=tmp_path / "coordinator", address="127.0.0.1:9092")
    node_key = "ecdsa-sha2-nistp384 AAAA hospital-a"
    pinned = {**pin.to_json(), "pinned_at": "2026-01-01T00:00:00Z", "approved_by": []}
    save_nodes(
        coordinator,
        {
            "hospital-a": RegisteredNode(
                "hospital-a", node_key, str(NODE), "2026-01-01T00:00:00Z", ledger_key=key, board=pinned
            ),
            "hospital-b": RegisteredNode("hospital-b", node_key, "8", "2026-01-01T00:00:00Z", ledger_key="ab" * 32),
        },
    )
    return node, board, coordinator


def _rotate(node, board, tmp_path, *, members=None) -> None:
    """The board's rotation, then the new key put in the key folder's place (as `budget rotate-key` does)."""
    site = node.site
    new_key = tmp_path / "new-ledger.key"
    new_public = public_hex(load_or_create_key(key_path=new_key, create=True))
    with open_site_ledger(site) as ledger:
        proposal = ledger.propose(
            action=rotation_action(new_public_key=new_public), reason="yearly rotation", proposed_by="site IT"
        )
        ledger.rotate_key(new_key_path=new_key, proposal=board.sign(proposal, members=members))
    os.replace(site.ledger_key_path, tmp_path / "retired-ledger.key")
    os.replace(new_key, site.ledger_key_path)


def _accept(coordinator, handover) -> object:
    return runner.invoke(
        coordinator_app,
        ["accept-ledger-key", str(handover), "--name", "hospital-a", "--folder", str(coordinator.folder)],
    )


def test_a_rotated_key_is_accepted_only_through_its_handover_and_the_old_key_is_refused(registered, tmp_path):
    node, board, coordinator = registered
    before = _answer(node, 0.2)
    assert checked(before, node_names={}, registry=_registry(coordinator)).status == "ok"

    _rotate(node, board, tmp_path)
    after = _answer(node, 0.3)
    assert "refusal" not in after.content
    refused = checked(after, node_names={}, registry=_registry(coordinator))
    assert refused.status == "failed" and "a key other than the site's registered ledger key" in refused.reason
    assert "accept-ledger-key --name hospital-a" in refused.reason  # the fix, in the coordinator's words

    handover = tmp_path / "handover.json"
    written = runner.invoke(budget_app, ["handover", "--ledger", str(node.site.ledger_path), "--out", str(handover)])
    assert written.exit_code == 0, written.output
    done = _accept(coordinator, handover)
    assert done.exit_code == 0, done.output
    assert "approved by Member A (simulated), Member B (simulated)" in done.output

    with open_site_ledger(node.site) as ledger:
        assert registered_nodes(coordinator)["hospital-a"].ledger_key == ledger.public_key
    (rotation,) = registered_nodes(coordinator)["hospital-a"].key_rotations
    assert rotation["signers"] == board.names[:2] and rotation["accepted_at"]
    assert checked(after, node_names={}, registry=_registry(coordinator)).status == "ok"
    # Receipts under the old key are refused from now on (a copy of it proves nothing new).
    old = checked(before, node_names={}, registry=_registry(coordinator))
    assert old.status == "failed" and "a key other than the site's registered ledger key" in old.reason
    shown = runner.invoke(coordinator_app, ["status", "--folder", str(coordinator.folder)])
    assert shown.exit_code == 0, shown.output
    assert (
        "ledger keys (each site's receipts must verify under its own):\n  hospital-a: ed25519:SHA256:" in shown.output
    )
    assert "after 1 accepted rotation(s)" in shown.output
    assert "hospital-a: 2 of 3: Member A (simulated)" in shown.output  # the pinned board, unchanged
    assert "hospital-b: none pinned (rotations count the board the handover states)" in shown.output
    again = _accept(coordinator, handover)
    assert again.exit_code == 2 and "no new key to accept" in again.output


def test_a_handover_that_does_not_chain_changes_nothing(registered, tmp_path):
    """Without the quorum (an insider holding the old key keeps one member's signature and
    signs again), or from another site's ledger: refused, nodes.json unchanged."""
    import dataclasses

    from privacy_budgets.entries import LedgerEntry
    from privacy_budgets.keys import load_key, sign

    node, board, coordinator = registered
    old_key = load_key(key_path=node.site.ledger_key_path)
    _rotate(node, board, tmp_path)
    handover = tmp_path / "handover.json"
    assert runner.invoke(budget_app, ["handover", "--ledger", str(node.site.ledger_path), "--out", str(handover)])
    data = json.loads(handover.read_text())
    entry = LedgerEntry.from_dict(data["rotations"][0]["entry"])
    details = entry.details
    details["authority"]["signatures"] = details["authority"]["signatures"][:1]
    forged = dataclasses.replace(entry, details_json=json.dumps(details, sort_keys=True))
    forged = dataclasses.replace(forged, entry_hash=forged.compute_hash())
    forged = dataclasses.replace(forged, signature=sign(old_key, forged.signed_message()))
    data["rotations"][0]["entry"] = forged.to_dict()
    handover.write_text(json.dumps(data))
    before = coordinator.nodes_path.read_text()
    done = _accept(coordinator, handover)
    assert done.exit_code == 2 and "not approved by the board's quorum" in done.output
    assert f"seq {entry.seq} of site hospital-a" in done.output and "the registered key stays" in done.output
    data["site_id"] = "hospital-b"
    handover.write_text(json.dumps(data))
    done = _accept(coordinator, handover)
    assert done.exit_code == 2 and "of site 'hospital-b', not 'hospital-a'" in done.output
    assert coordinator.nodes_path.read_text() == before


def test_with_the_board_pinned_an_insider_with_the_old_key_and_a_board_of_their_own_changes_nothing(
    registered, tmp_path
):
    """The insider of A6 at the coordinator: the handover states a board of two keys they
    hold, which "approved" the rotation; the entry is signed with the old key."""
    import dataclasses

    from privacy_budgets.authority import authority_details, tally
    from privacy_budgets.entries import LedgerEntry
    from privacy_budgets.keys import load_key, rotation_message, sign

    node, board, coordinator = registered
    old_key = load_key(key_path=node.site.ledger_key_path)
    _rotate(node, board, tmp_path)
    handover = tmp_path / "handover.json"
    runner.invoke(budget_app, ["handover", "--ledger", str(node.site.ledger_path), "--out", str(handover)])
    data = json.loads(handover.read_text())
    entry = LedgerEntry.from_dict(data["rotations"][0]["entry"])
    insider = SimulatedBoard.create(tmp_path / "insider", names=("Mallory", "Mallory's friend"))
    mallory = tmp_path / "mallory.key"
    mallory_public = public_hex(load_or_create_key(key_path=mallory, create=True))
    with open_site_ledger(node.site) as ledger:
        proposal = ledger.propose(
            action=rotation_action(new_public_key=mallory_public), reason="yearly rotation", proposed_by="site IT"
        )
    proposal = insider.sign(proposal)
    counted = tally(proposal, board=insider.roster())
    old_public = entry.details["old_public_key"]
    proof = rotation_message(ledger_id=data["ledger_id"], old_public_key=old_public, new_public_key=mallory_public)
    details = {
        **entry.details,
        "new_public_key": mallory_public,
        "possession": sign(load_key(key_path=mallory), proof),
        "authority": authority_details(proposal, counted),
    }
    forged = dataclasses.replace(entry, actor=counted.actor(), details_json=json.dumps(details, sort_keys=True))
    forged = dataclasses.replace(forged, entry_hash=forged.compute_hash())
    forged = dataclasses.replace(forged, signature=sign(old_key, forged.signed_message()))
    data["rotations"][0] = {"entry": forged.to_dict(), "board": insider.roster().to_json()}
    handover.write_text(json.dumps(data))
    before = coordinator.nodes_path.read_text()
    done = _accept(coordinator, handover)
    assert done.exit_code == 2 and "which is not the board pinned here (2 of 3: Member A" in done.output
    assert "Nothing was changed" in done.output and "register-node --board" in done.output
    assert coordinator.nodes_path.read_text() == before


def test_a_board_change_then_a_rotation_by_the_new_quorum_re_pins_the_board(registered, tmp_path):
    from privacy_budgets.board import Board
    from privacy_budgets.proposals import board_action

    node, board, coordinator = registered
    newcomer = SimulatedBoard.create(tmp_path / "newcomer", names=("Member D",), quorum=1)
    roster = Board(members=(*board.roster().members[:2], *newcomer.roster().members), quorum=2)
    new_key = tmp_path / "new-ledger.key"
    new_public = public_hex(load_or_create_key(key_path=new_key, create=True))
    with open_site_ledger(node.site) as ledger:
        proposal = ledger.propose(action=board_action(board=roster), reason="C leaves", proposed_by="site IT")
        change = ledger.apply(newcomer.sign(board.sign(proposal)))
        rotation = ledger.propose(action=rotation_action(new_public_key=new_public), reason="y", proposed_by="IT")
        ledger.rotate_key(new_key_path=new_key, proposal=newcomer.sign(board.sign(rotation, members=board.names[:1])))
    handover = tmp_path / "handover.json"
    runner.invoke(budget_app, ["handover", "--ledger", str(node.site.ledger_path), "--out", str(handover)])
    done = _accept(coordinator, handover)
    assert done.exit_code == 0, done.output
    assert f"seq {change.seq}" in done.output and "it is pinned in its place" in done.output
    site = registered_nodes(coordinator)["hospital-a"]
    assert site.ledger_key == new_public and site.key_rotations[0]["signers"] == ["Member A (simulated)", "Member D"]
    assert site.board["since_seq"] == change.seq and site.board["approved_by"] == board.names[:2]
    assert site.pinned_board.board.describe() == roster.describe() and site.board_changes[0]["seq"] == change.seq


def test_register_node_refuses_a_board_file_it_cannot_pin_before_anything_is_written(registered, tmp_path):
    node, _, coordinator = registered
    before = coordinator.nodes_path.read_text()
    listing = tmp_path / "listing.json"
    listing.write_text(json.dumps({"ledger_id": "ab" * 32, "ledger_key": "cd" * 32, "board": None}))
    args = ["register-node", str(tmp_path / "none.pub"), "--name", "hospital-c", "--folder", str(coordinator.folder)]
    done = runner.invoke(coordinator_app, [*args, "--board", str(listing)])
    assert done.exit_code == 2 and "has no board (legacy mode), so there is none to pin" in done.output
    listing.write_text(runner.invoke(budget_app, ["board", "--ledger", str(node.site.ledger_path), "--json"]).output)
    done = runner.invoke(coordinator_app, [*args, "--board", str(listing), "--ledger-key", "ef" * 32])
    assert done.exit_code == 2 and "is not the ledger key of the board file" in done.output
    assert coordinator.nodes_path.read_text() == before
