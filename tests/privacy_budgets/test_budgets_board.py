"""The board's quorum, enforced by the ledger when it writes and by verify when it reads.

The board is a simulated one with real Ed25519 keys (3 members, quorum 2); hardware
members are ordinary keys playing the authenticator (``_authenticator``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from _authenticator import Authenticator
from conftest import DATASET, DELTA, PROJECT, SITE
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from privacy_budgets import Ledger
from privacy_budgets.authority import AuthorityError
from privacy_budgets.board import Board, Member
from privacy_budgets.cli import app
from privacy_budgets.entries import ENTRY_FIELDS, LedgerEntry, canonical
from privacy_budgets.keys import load_key, sign
from privacy_budgets.proposals import (
    SignedProposal,
    allocation_action,
    approval_action,
    board_action,
    cap_action,
    propose,
)
from privacy_budgets.signatures import (
    PROPOSAL_NAMESPACE,
    REQUEST_NAMESPACE,
    KeySigner,
    SignatureInvalid,
    generate_key_pair,
    public_key_of,
)
from privacy_budgets.simulated_board import SimulatedBoard

A, B, C = "Member A (simulated)", "Member B (simulated)", "Member C (simulated)"
runner = CliRunner()


@pytest.fixture
def board(tmp_path) -> SimulatedBoard:
    return SimulatedBoard.create(tmp_path / "board")


@pytest.fixture
def boarded(ledger_path, board):
    """A ledger with the simulated board recorded, a cap of 3 and an allocation of 1."""
    with Ledger.open(ledger_path, site_id=SITE) as ledger:
        board.establish(ledger)
        board.decide(ledger, action=cap_action(dataset=DATASET, epsilon=3.0, delta=DELTA), reason="site policy")
        board.decide(
            ledger, action=allocation_action(dataset=DATASET, project=PROJECT, epsilon=1.0), reason="protocol 12"
        )
        yield ledger


def raise_cap(ledger: Ledger, epsilon: float = 5.0, **kw) -> SignedProposal:
    return ledger.propose(
        action=cap_action(dataset=DATASET, epsilon=epsilon, delta=DELTA), reason="EB-117", proposed_by=A, **kw
    )


def n_entries(ledger: Ledger) -> int:
    return len(ledger.entries())


# --- the quorum -----------------------------------------------------------------------


def test_a_one_signature_cap_raise_is_refused_through_the_ledger(boarded, board):
    before = n_entries(boarded)
    with pytest.raises(
        AuthorityError,
        match=r"set the cap of dataset hospital_01 to epsilon 5.00 .* needs signatures of 2 distinct members of the "
        r"board \(2 of 3: .*\); it has 1 \(Member A \(simulated\)\)\. Nothing was written",
    ):
        boarded.apply(board.sign(raise_cap(boarded), members=[A]))
    with pytest.raises(
        AuthorityError, match="raising the cap of dataset 'hospital_01' from 3.00 to 5.00 needs a proposal"
    ):
        boarded.set_cap(dataset=DATASET, epsilon=5.0, delta=DELTA, actor="site IT", reason="more")
    with pytest.raises(AuthorityError, match="raising the allocation of project 'quickstart' from 1.00 to 2.00"):
        boarded.allocate(dataset=DATASET, project=PROJECT, epsilon=2.0, actor="site IT", reason="more")
    with pytest.raises(AuthorityError, match="a first allocation for project 'other' lets it spend"):
        boarded.allocate(dataset=DATASET, project="other", epsilon=0.1, actor="site IT", reason="new")
    assert n_entries(boarded) == before and boarded.cap(dataset=DATASET) == 3.0
    entry = boarded.apply(board.sign(raise_cap(boarded), members=[A, C]))
    assert boarded.cap(dataset=DATASET) == 5.0
    assert entry.actor == f"board (2 of quorum 2): {A}, {C}"
    assert [s["name"] for s in entry.details["authority"]["signed_by"]] == [A, C]
    assert len(entry.details["authority"]["signatures"]) == 2
    assert boarded.verify(deep=True).ok


def test_a_member_who_signs_twice_counts_once(boarded, board):
    proposal = raise_cap(boarded)
    key = board.signer(A).key
    twice = SignedProposal(
        document=proposal.document,
        signatures=(
            KeySigner(key).sign(proposal.message, namespace=PROPOSAL_NAMESPACE),
            KeySigner(key, hash_algorithm="sha256").sign(proposal.message, namespace=PROPOSAL_NAMESPACE),
        ),
    )
    with pytest.raises(
        AuthorityError,
        match=r"it has 1 \(Member A \(simulated\)\)\. Not counted: signature 2 does not count again: Member A",
    ):
        boarded.apply(twice)
    assert len(board.sign(proposal, members=[A, A]).signatures) == 1  # the file keeps one per key


def test_an_expired_proposal_is_refused(boarded, board):
    old = propose(
        site_id=SITE,
        ledger_id=boarded.ledger_id,
        action=cap_action(dataset=DATASET, epsilon=5.0, delta=DELTA),
        reason="EB-117",
        proposed_by=A,
        expires_in=timedelta(days=14),
        now=datetime.now(UTC) - timedelta(days=30),
    )
    with pytest.raises(
        AuthorityError, match="counts only until it expires: this one expired at .* Fix: make a new one"
    ):
        boarded.apply(board.sign(old, members=[A, B, C]))


def test_a_removed_members_signature_no_longer_counts(boarded, board):
    roster = board.roster()
    without_c = Board(members=roster.members[:2], quorum=2)
    entry = board.decide(boarded, action=board_action(board=without_c), reason="C left the board")
    assert entry.kind == "board" and boarded.board().describe() == f"2 of 2: {A}, {B}"
    with pytest.raises(
        AuthorityError,
        match=r"it has 1 \(Member A .*signature 2 does not count: key SHA256:\S+ is not a member of the current board",
    ):
        boarded.apply(board.sign(raise_cap(boarded), members=[A, C]))
    assert boarded.verify().ok


def test_a_tampered_proposal_is_refused(boarded, board):
    signed = board.sign(raise_cap(boarded, epsilon=4.0), members=[A, B])
    edited = dict(signed.document, action={**signed.document["action"], "epsilon": 40.0})
    with pytest.raises(AuthorityError, match="it has 0 .*signature 1 does not count: The signature does not verify"):
        boarded.apply(SignedProposal(document=edited, signatures=signed.signatures))
    with pytest.raises(SignatureInvalid, match="does not verify"):
        SignedProposal(document=edited).with_signatures(list(signed.signatures))


def test_a_signature_in_the_wrong_namespace_is_refused(boarded, board):
    proposal = raise_cap(boarded)
    wrong = [board.signer(n).sign(proposal.message, namespace=REQUEST_NAMESPACE) for n in (A, B)]
    with pytest.raises(AuthorityError, match="only in the namespace it was made for: .*request@v1'"):
        boarded.apply(SignedProposal(document=proposal.document, signatures=tuple(wrong)))


def test_a_proposal_is_applied_once_and_only_to_the_ledger_it_names(boarded, board, tmp_path):
    signed = board.sign(raise_cap(boarded))
    boarded.apply(signed)
    with pytest.raises(AuthorityError, match="applied once; this one was applied at seq"):
        boarded.apply(signed)
    with Ledger.open(tmp_path / "other.ledger", site_id=SITE) as other:
        board.establish(other)
        with pytest.raises(AuthorityError, match="applied only to the ledger it names"):
            other.apply(signed)


def test_lowering_stays_a_one_person_action(boarded):
    boarded.set_cap(dataset=DATASET, epsilon=2.0, delta=DELTA, actor="site IT", reason="protect")
    boarded.allocate(dataset=DATASET, project=PROJECT, epsilon=0.5, actor="site IT", reason="protect")
    with pytest.raises(AuthorityError, match="changing the delta of dataset"):
        boarded.set_cap(dataset=DATASET, epsilon=1.0, delta=1e-6, actor="site IT", reason="tighter delta")
    assert (boarded.cap(dataset=DATASET), boarded.allocation(dataset=DATASET, project=PROJECT)) == (2.0, 0.5)
    assert boarded.verify(deep=True).ok


# --- researchers' approvals ------------------------------------------------------------


def test_researchers_are_approved_by_a_quorum_and_withdrawn_by_one_person(boarded, board, tmp_path):
    ada = generate_key_pair(path=tmp_path / "ada", passphrase=None, comment="ada")
    ben = generate_key_pair(path=tmp_path / "ben", passphrase=None, comment="ben")
    action = approval_action(
        dataset=DATASET, project=PROJECT, purpose="cardiac risk model", researchers=[("Ada", ada), ("Ben", ben)]
    )
    with pytest.raises(AuthorityError, match="approving researchers for project 'quickstart' needs a proposal"):
        boarded.approve(actor="site IT", reason="r", **{k: v for k, v in action.items() if k != "kind"})
    entry = board.decide(boarded, action=action, reason="EB-117")
    approval = boarded.approval(dataset=DATASET, project=PROJECT)
    assert [r["name"] for r in approval.researchers] == ["Ada", "Ben"] and approval.purpose == "cardiac risk model"
    assert "may be asked for by researchers Ada, Ben" in __import__("privacy_budgets").statement(entry)
    boarded.approve(
        dataset=DATASET,
        project=PROJECT,
        purpose="cardiac risk model",
        researchers=[{"name": "Ada", "key": ada.openssh(comment=False)}],
        actor="site IT",
        reason="Ben left the project",
    )
    assert [r["name"] for r in boarded.approval(dataset=DATASET, project=PROJECT).researchers] == ["Ada"]
    assert boarded.verify().ok


# --- membership changes ----------------------------------------------------------------


def test_a_member_who_joins_signs_the_change_too(boarded, board, tmp_path):
    dee = generate_key_pair(path=tmp_path / "dee", passphrase=None, comment="Dee")
    bigger = Board(members=(*board.roster().members, Member(name="Dee", key=dee)), quorum=3)
    proposal = boarded.propose(action=board_action(board=bigger), reason="Dee joins", proposed_by=A)
    with pytest.raises(AuthorityError, match="each member who joins the board .* signs the proposal too"):
        boarded.apply(board.sign(proposal))
    from privacy_budgets.signatures import load_private_key

    signed = board.sign(proposal).sign(KeySigner(load_private_key(path=tmp_path / "dee", passphrase=None)))
    boarded.apply(signed)
    assert boarded.board().quorum == 3
    with pytest.raises(AuthorityError, match="needs signatures of 3 distinct members"):
        boarded.apply(board.sign(raise_cap(boarded)))


def test_the_first_board_is_recorded_once_and_then_changed_only_by_a_quorum(boarded, board):
    with pytest.raises(AuthorityError, match="first board is recorded once"):
        boarded.establish_board(board=board.roster(), actor="site IT", reason="again")


# --- hardware members ------------------------------------------------------------------


@pytest.fixture
def hardware_board(ledger_path, board):
    yubi = Authenticator("sk-ssh-ed25519@openssh.com")
    roster = Board(members=(board.roster().members[0], Member(name="Yubi", key=yubi.public)), quorum=2)
    with Ledger.open(ledger_path, site_id=SITE) as ledger:
        ledger.establish_board(board=roster, actor="site IT", reason="board with a hardware key")
        yield ledger, yubi


def _with_touch(ledger, board, yubi, *, flags=0x01, counter=10, epsilon=3.0):
    proposal = ledger.propose(
        action=cap_action(dataset=DATASET, epsilon=epsilon, delta=DELTA), reason="cap", proposed_by=A
    )
    touch = yubi.sign(proposal.message, namespace=PROPOSAL_NAMESPACE, flags=flags, counter=counter)
    return board.sign(proposal, members=[A]).with_signatures([touch])


def test_a_hardware_members_touch_counts_and_is_recorded(hardware_board, board):
    ledger, yubi = hardware_board
    entry = ledger.apply(_with_touch(ledger, board, yubi, flags=0x05, counter=10))
    yubi_signer = entry.details["authority"]["signed_by"][1]
    assert (yubi_signer["name"], yubi_signer["flags"], yubi_signer["counter"]) == ("Yubi", 5, 10)
    assert ledger.verify().ok


def test_a_hardware_signature_without_a_touch_is_refused(hardware_board, board):
    ledger, yubi = hardware_board
    with pytest.raises(SignatureInvalid, match="only when the key was touched"):
        _with_touch(ledger, board, yubi, flags=0x00)  # refused as soon as it is added to the file
    proposal = _with_touch(ledger, board, yubi)
    untouched = yubi.sign(proposal.message, namespace=PROPOSAL_NAMESPACE, flags=0x00, counter=11)
    forced = SignedProposal(document=proposal.document, signatures=(proposal.signatures[0], untouched))
    with pytest.raises(AuthorityError, match=r"it has 1 .*without user presence \(0x01\)"):
        ledger.apply(forced)


def test_a_hardware_counter_seen_twice_means_a_cloned_key(hardware_board, board):
    ledger, yubi = hardware_board
    ledger.apply(_with_touch(ledger, board, yubi, counter=10, epsilon=3.0))
    with pytest.raises(AuthorityError, match="shows counter 10 again, on another proposal: .* may be cloned"):
        ledger.apply(_with_touch(ledger, board, yubi, counter=10, epsilon=4.0))
    ledger.apply(_with_touch(ledger, board, yubi, counter=11, epsilon=4.0))


# --- verify rejects what bypasses the ledger's own checks -------------------------------


def _append_raw(path, *, kind, details, **fields):
    """Write an entry as an insider with the ledger's key would, bypassing Ledger."""
    key = load_key(key_path=path.with_name(path.name + ".key"))
    conn = sqlite3.connect(path)
    head = LedgerEntry(
        *conn.execute(f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
    )
    entry = LedgerEntry.unsigned(
        seq=head.seq + 1,
        time=head.time,
        kind=kind,
        site_id=SITE,
        prev_hash=head.entry_hash,
        details_json=canonical(details),
        **fields,
    )
    entry = dataclasses.replace(entry, signature=sign(key, entry.signed_message()))
    conn.execute(f"INSERT INTO entries VALUES ({', '.join('?' for _ in ENTRY_FIELDS)})", dataclasses.astuple(entry))
    conn.commit()
    conn.close()
    return entry


def test_verify_rejects_a_cap_raise_written_past_the_ledger(boarded, ledger_path, tmp_path):
    boarded.close()
    copy = tmp_path / "forged.ledger"
    shutil.copy(ledger_path, copy)
    shutil.copy(f"{ledger_path}.key", f"{copy}.key")
    forged = _append_raw(
        copy,
        kind="set_cap",
        details={"epsilon": 100.0, "previous_epsilon": 3.0, "spent_when_set": 0.0, "below_spent": False},
        dataset=DATASET,
        actor="ethics board",
        purpose="forged",
        delta=DELTA,
        epsilon_after=0.0,
    )
    report = Ledger.verify_file(copy)
    assert not report.ok and report.first_bad_seq == forged.seq
    assert (
        "breaks the board's rule: raising the cap of dataset 'hospital_01' from 3.00 to 100.00 needs a proposal"
        in report.problem
    )


def test_verify_rejects_signatures_of_keys_that_are_not_members(boarded, ledger_path, tmp_path):
    boarded.close()
    copy = tmp_path / "forged.ledger"
    shutil.copy(ledger_path, copy)
    shutil.copy(f"{ledger_path}.key", f"{copy}.key")
    with Ledger.open(ledger_path, site_id=SITE) as ledger:
        proposal = raise_cap(ledger, epsilon=100.0)
    strangers = [KeySigner(Ed25519PrivateKey.generate()) for _ in range(2)]
    for signer in strangers:
        proposal = proposal.sign(signer)
    authority = {
        "proposal": proposal.document,
        "proposal_id": proposal.id,
        "signatures": list(proposal.signatures),
        "signed_by": [
            {"name": "x", "fingerprint": public_key_of(s.key).fingerprint, "flags": None, "counter": None}
            for s in strangers
        ],
    }
    details = {
        "epsilon": 100.0,
        "previous_epsilon": 3.0,
        "spent_when_set": 0.0,
        "below_spent": False,
        "authority": authority,
    }
    forged = _append_raw(
        copy,
        kind="set_cap",
        details=details,
        dataset=DATASET,
        actor="board",
        purpose="EB-117",
        delta=DELTA,
        epsilon_after=0.0,
    )
    report = Ledger.verify_file(copy)
    assert not report.ok and report.first_bad_seq == forged.seq
    assert "it has 0" in report.problem and "is not a member of the current board" in report.problem


# --- legacy ledgers --------------------------------------------------------------------


def test_a_legacy_ledger_keeps_working_and_migrates_once(ledger, ledger_path, board):
    # conftest's ledger: a cap and an allocation written one-person, as before boards existed.
    assert ledger.board() is None
    ledger.set_cap(dataset=DATASET, epsilon=4.0, delta=DELTA, actor="site IT", reason="legacy raise")
    entry = board.establish(ledger)
    assert entry.seq == 5 and "Board recorded by ledger creator (simulated): 2 of 3" in __import__(
        "privacy_budgets"
    ).statement(entry)
    with pytest.raises(AuthorityError, match="raising the cap"):
        ledger.set_cap(dataset=DATASET, epsilon=5.0, delta=DELTA, actor="site IT", reason="after migration")
    board.decide(ledger, action=cap_action(dataset=DATASET, epsilon=5.0, delta=DELTA), reason="EB-118")
    report = ledger.verify(deep=True)
    assert report.ok and "board quorum" in report.checks


def test_a_legacy_ledger_applies_proposals_with_valid_signatures(ledger, board):
    proposal = ledger.propose(
        action=allocation_action(dataset=DATASET, project="p2", epsilon=0.5), reason="r", proposed_by=A
    )
    with pytest.raises(AuthorityError, match="without a board a proposal is applied with at least one signature"):
        ledger.apply(proposal)
    entry = ledger.apply(board.sign(proposal, members=[A]))
    assert entry.actor.startswith("signed by") and ledger.verify().ok


def test_a_board_may_establish_itself_with_a_quorum_of_new_members(ledger, board):
    proposal = ledger.propose(action=board_action(board=board.roster()), reason="board by proposal", proposed_by=A)
    with pytest.raises(AuthorityError, match="members of the new board"):
        ledger.apply(board.sign(proposal, members=[A]))
    ledger.apply(board.sign(proposal))
    assert ledger.board() == board.roster() and ledger.verify().ok


# --- the CLI: propose, sign on each member's machine, apply -----------------------------


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def test_the_cli_walks_a_two_of_three_cap_raise(tmp_path):
    ledger_path = tmp_path / "site.ledger"
    members = []
    for name in ("ada", "ben", "cy"):
        result = invoke("keygen", "--out", tmp_path / name, "--name", name, input=f"pw-{name}\npw-{name}\n")
        assert result.exit_code == 0, result.output
        members.append({"name": name, "key": (tmp_path / f"{name}.pub").read_text().strip()})
    (tmp_path / "board.json").write_text(json.dumps({"quorum": 2, "members": members}))
    Ledger.open(ledger_path, site_id=SITE).close()
    result = invoke(
        "establish-board",
        "--ledger",
        ledger_path,
        "--board",
        tmp_path / "board.json",
        "--actor",
        "IT",
        "--reason",
        "init",
    )
    assert result.exit_code == 0, result.output
    result = invoke(
        "set-cap",
        "--ledger",
        ledger_path,
        "--dataset",
        DATASET,
        "--epsilon",
        3,
        "--delta",
        DELTA,
        "--actor",
        "IT",
        "--reason",
        "r",
    )
    assert result.exit_code == 2 and "a first cap on dataset 'hospital_01' lets releases begin" in result.stderr
    proposal = tmp_path / "cap.json"
    result = invoke(
        "propose", "cap", "--ledger", ledger_path, "--dataset", DATASET, "--epsilon", 3, "--delta", DELTA,
        "--reason", "EB-117", "--proposed-by", "ada", "--out", proposal,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("sign", proposal, "--key", tmp_path / "ada", input="pw-ada\n")
    assert result.exit_code == 0 and "You are signing: Proposal" in result.output, result.output
    result = invoke("apply", proposal, "--ledger", ledger_path)
    assert result.exit_code == 2
    assert "needs signatures of 2 distinct members of the board (2 of 3: ada, ben, cy); it has 1 (ada)" in result.stderr
    result = invoke("sign", proposal, "--key", tmp_path / "ben", input="not ben's passphrase\n")
    assert result.exit_code == 2 and "The passphrase does not open the key" in result.stderr
    (tmp_path / "ben.pass").write_text("pw-ben\n")
    result = invoke("sign", proposal, "--key", tmp_path / "ben", "--passphrase-file", tmp_path / "ben.pass")
    assert result.exit_code == 0, result.output
    shown = invoke("show", proposal, "--ledger", ledger_path)
    assert "signed by ada" in shown.output and "2 of the 2 signatures the board needs" in shown.output
    result = invoke("apply", proposal, "--ledger", ledger_path)
    assert result.exit_code == 0 and "Cap set by board (2 of quorum 2): ada, ben" in result.output, result.output
    listed = json.loads(invoke("board", "--ledger", ledger_path, "--json").output)
    assert listed["board"]["quorum"] == 2 and [m["name"] for m in listed["board"]["members"]] == ["ada", "ben", "cy"]
    assert invoke("verify", "--ledger", ledger_path).exit_code == 0


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH 8.2+) is not installed")
def test_the_cli_signs_through_ssh_keygen_and_merges_signature_files(tmp_path, board):
    ledger_path = tmp_path / "site.ledger"
    with Ledger.open(ledger_path, site_id=SITE) as ledger:
        board.establish(ledger)
        proposal = raise_cap(ledger, epsilon=2.0)
    path = proposal.save(tmp_path / "cap.json")
    result = invoke("sign", path, "--key", board.key_path(A), "--ssh-keygen")
    assert result.exit_code == 0, result.output
    # Member B signs the exact bytes with ssh-keygen alone, and sends back a .sig file.
    payload = invoke("show", path, "--payload").output.encode()
    assert payload == proposal.message
    import subprocess

    done = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(board.key_path(B)), "-n", PROPOSAL_NAMESPACE],
        input=payload,
        capture_output=True,
    )
    (tmp_path / "b.sig").write_bytes(done.stdout)
    result = invoke("apply", path, "--ledger", ledger_path, "--signature", tmp_path / "b.sig")
    assert result.exit_code == 0 and f"{A}, {B}" in result.output, result.output
