"""Ledger heads outside the site: every receipt carries the ledger's signed head, and the
coordinator's mirror (reconcile, and the run folder's journal) flags a head that goes
backwards or forks: a rollback at the site seen from outside it (issue 16)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import DATASET, DELTA, PROJECT, SITE

from federation.coordinator.head_mirror import HEADS_FILE, HeadMirror
from federation.coordinator.run_folder import RunFolder
from privacy_budgets import Ledger, gaussian_event
from privacy_budgets.head_chain import audit_head_message, audit_head_problems, head_problems
from privacy_budgets.keys import load_key, public_hex, sign
from privacy_budgets.receipts import SpendReceipt
from privacy_budgets.reconciliation import reconcile


def _spend(ledger: Ledger, n: int = 1) -> list[dict]:
    out = []
    for _ in range(n):
        r = ledger.reserve(
            dataset=DATASET, project=PROJECT, actor="a", event=gaussian_event(noise_multiplier=20.0), purpose="count"
        )
        out.append(ledger.receipt(ledger.commit(r), dataset_total=False).to_dict())
    return out


def _rolled_back_receipts(tmp_path: Path) -> tuple[list[dict], Path]:
    """Receipts of a site whose ledger was put back to an older copy, then written on."""
    path = tmp_path / "site.ledger"
    with Ledger.open(path, site_id=SITE) as ledger:
        ledger.set_cap(dataset=DATASET, epsilon=5.0, delta=DELTA, actor="it", reason="cap")
        ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=5.0, actor="board", reason="allocation")
        receipts = _spend(ledger)
    shutil.copy(path, tmp_path / "older.ledger")
    with Ledger.open(path, site_id=SITE) as ledger:
        receipts += _spend(ledger, 2)  # heads 7 and 9
    shutil.copy(tmp_path / "older.ledger", path)
    with Ledger.open(path, site_id=SITE) as ledger:
        receipts += _spend(ledger)  # seq 7 again, another entry, head 7
    return receipts, path


def test_every_receipt_carries_the_ledgers_signed_head(ledger):
    [receipt] = _spend(ledger)
    assert (receipt["head_seq"], receipt["head_hash"]) == (receipt["seq"], receipt["entry_hash"])
    signed = SpendReceipt.from_dict(receipt)
    assert signed.verifies()
    moved = SpendReceipt.from_dict({**receipt, "head_seq": 99})
    assert not moved.verifies()  # the head is signed with the receipt


def test_a_receipt_from_before_heads_still_verifies(ledger):
    from privacy_budgets.receipts import sign_receipt

    [receipt] = _spend(ledger)
    key = load_key(key_path=Path(f"{ledger.path}.key"))
    fields = {k: v for k, v in receipt.items() if k not in ("signature", "head_seq", "head_hash")}
    old = sign_receipt(key, fields).to_dict()
    del old["head_seq"], old["head_hash"]  # as an older site sent it
    assert SpendReceipt.from_dict(old).verifies() and head_problems([old]) == []


def test_a_rollback_shows_as_a_fork_and_a_head_going_backwards(tmp_path):
    receipts, path = _rolled_back_receipts(tmp_path)
    problems = head_problems(receipts)
    kinds = {p["problem"] for p in problems}
    assert kinds == {"head_fork", "head_backwards"}
    fork = next(p for p in problems if p["problem"] == "head_fork")
    assert fork["seq"] == 7 and fork["site"] == SITE and "rewritten or rolled back" in fork["detail"]
    back = next(p for p in problems if p["problem"] == "head_backwards")
    assert "had reached ledger head seq 9" in back["detail"] and "head seq 7" in back["detail"]
    frame = reconcile(receipts=receipts, ledger_export=_export(path))
    assert {"head_fork", "head_backwards"} <= set(frame["problem"])
    assert frame.attrs["verdict"].startswith("NOT reconciled")


def _export(path: Path) -> dict:
    with Ledger.open(path, site_id=SITE) as ledger:
        return ledger.export()


def test_a_relay_cannot_frame_a_site_with_unsigned_heads(tmp_path):
    receipts, _ = _rolled_back_receipts(tmp_path)
    honest = receipts[:3]
    forged = {**honest[-1], "head_seq": 2, "head_hash": "0" * 64}  # edited by the relay: signature breaks
    assert head_problems([*honest, forged]) == []


def test_the_coordinators_mirror_flags_the_rollback_when_the_reply_arrives(tmp_path):
    receipts, _ = _rolled_back_receipts(tmp_path)
    first, second = RunFolder(tmp_path / "runs" / "run-1"), RunFolder(tmp_path / "runs" / "run-2")
    for folder in (first, second):
        folder.path.mkdir(parents=True, exist_ok=True)
    first.journal({"event": "reply", "site": SITE, "status": "ok", "receipts": receipts[:3]})
    assert not any(e["event"] == "ledger_head_alert" for e in first.exchanges())
    second.journal({"event": "reply", "site": SITE, "status": "ok", "receipts": receipts[3:]})
    [alert] = [e for e in second.exchanges() if e["event"] == "ledger_head_alert"]
    assert {p["problem"] for p in alert["problems"]} == {"head_fork", "head_backwards"}
    mirror = HeadMirror(tmp_path / "runs" / HEADS_FILE)
    assert len(mirror.lines()) == 2 and mirror.problems()


def test_an_audit_log_signed_again_by_the_key_holder_shows_at_the_mirror(tmp_path, ledger):
    """An insider holding the node's key re-chains the audit log and signs its heads again:
    locally everything verifies; the mirror's copies of the earlier heads disagree."""
    key = load_key(key_path=Path(f"{ledger.path}.key"))

    def head(seq: int, line_hash: str, time: str) -> dict:
        record = {
            "kind": "audit_head",
            "time": time,
            "site": SITE,
            "signed_seq": seq,
            "signed_hash": line_hash,
            "ledger_seq": 3,
            "ledger_hash": "ab" * 32,
            "public_key": public_hex(key),
        }
        return {**record, "signature": sign(key, audit_head_message(record))}

    before = head(40, "1" * 64, "2026-12-01T10:00:00.000000Z")
    resigned = head(40, "2" * 64, "2026-12-01T11:00:00.000000Z")  # line 40 after the log was re-chained
    cut = head(30, "3" * 64, "2026-12-01T12:00:00.000000Z")
    problems = audit_head_problems([before, resigned, cut])
    assert [p["problem"] for p in problems] == ["audit_fork", "audit_backwards"]
    assert "line 40" in problems[0]["detail"] and "signed again" in problems[0]["detail"]
    mirror = HeadMirror(tmp_path / HEADS_FILE)
    assert mirror.observe(site=SITE, receipts=[], audit_head=before) == []
    [flag] = mirror.observe(site=SITE, receipts=[], audit_head=resigned)
    assert flag["problem"] == "audit_fork" and json.loads(json.dumps(flag))["site"] == SITE
