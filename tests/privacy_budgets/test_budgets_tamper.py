"""Tampering with the SQLite file by hand: verification names the first bad entry."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import DATASET, DELTA, PROJECT, SITE
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy_budgets import Ledger, LedgerError
from privacy_budgets.entries import ENTRY_FIELDS, LedgerEntry, canonical
from privacy_budgets.keys import fingerprint, load_key, public_hex, sign
from privacy_budgets.mechanisms import dpsgd_event, gaussian_event

COMMIT_SEQ, RESERVE_SEQ, OPEN_SEQ = 5, 4, 9


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict, list]:
    """A closed ledger holding every kind of entry, its checkpoint and its receipts."""
    path = tmp_path_factory.mktemp("tamper") / "site_a.ledger"
    with Ledger.open(path, site_id=SITE) as ledger:
        ledger.set_cap(dataset=DATASET, epsilon=3.0, delta=DELTA, actor="site-admin", reason="r")
        ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=2.0, actor="board", reason="r")
        r = ledger.reserve(
            dataset=DATASET,
            project=PROJECT,
            actor="node",
            purpose="FedAvg",
            event=dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=80),
            run_id="r1",
            round=1,
        )
        spend = ledger.commit(r)
        ledger.record_uncovered(
            dataset=DATASET,
            project=PROJECT,
            actor="node",
            purpose="FedAvg",
            what="row count 4012",
            run_id="r1",
            round=1,
        )
        b = ledger.reserve(
            dataset=DATASET,
            project=PROJECT,
            actor="analyst",
            purpose="count",
            event=gaussian_event(noise_multiplier=8.0),
            query_id="q1",
        )
        ledger.abort(b, reason="query cancelled")
        ledger.reserve(
            dataset=DATASET,
            project=PROJECT,
            actor="analyst",
            purpose="mean",
            event=gaussian_event(noise_multiplier=9.0),
            query_id="q2",
        )
        for i in range(2):
            ledger.record_uncovered(
                dataset=DATASET, project=PROJECT, actor="node", purpose="evaluation", what=f"AUC on 1200 rows, run {i}"
            )
        checkpoint = ledger.checkpoint()
        receipts = [ledger.receipt(spend).to_dict()]
        assert [e.kind for e in ledger.entries()] == [
            "genesis",
            "set_cap",
            "allocate",
            "reserve",
            "commit",
            "uncovered",
            "reserve",
            "abort",
            "reserve",
            "uncovered",
            "uncovered",
        ]
    return path, checkpoint, receipts


@pytest.fixture
def copy(pristine, tmp_path) -> Path:
    target = tmp_path / "copy.ledger"
    shutil.copy(pristine[0], target)
    shutil.copy(f"{pristine[0]}.key", f"{target}.key")
    return target


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def one_byte_off(value):
    if value is None:
        return "x"
    if isinstance(value, float):
        return math.nextafter(value, math.inf)  # the smallest possible change
    if isinstance(value, int):
        return value + 1000
    middle = len(value) // 2
    return value[:middle] + chr(ord(value[middle]) ^ 1) + value[middle + 1 :]


def test_pristine_copy_verifies(copy, pristine):
    report = Ledger.verify_file(copy, checkpoint=pristine[1], receipts=pristine[2], deep=True)
    assert report.ok, report.problem
    assert report.entries_checked == 11


@pytest.mark.parametrize("seq", [RESERVE_SEQ, COMMIT_SEQ])
@pytest.mark.parametrize("field", ENTRY_FIELDS)
def test_any_edited_field_names_its_entry(copy, field, seq):
    with raw(copy) as conn:
        (value,) = conn.execute(f"SELECT {field} FROM entries WHERE seq = ?", (seq,)).fetchone()
        edited = one_byte_off(value)
        if field == "round" and value is None:
            edited = 7
        conn.execute(f"UPDATE entries SET {field} = ? WHERE seq = ?", (edited, seq))
    report = Ledger.verify_file(copy)
    assert not report.ok
    assert report.first_bad_seq == seq, report.problems
    assert f"entry seq {seq} " in report.problem


def test_deleted_row(copy):
    with raw(copy) as conn:
        conn.execute("DELETE FROM entries WHERE seq = 6")
    report = Ledger.verify_file(copy)
    assert (report.ok, report.first_bad_seq) == (False, 6)
    assert report.problem == (
        "entry seq 6 is missing: the ledger jumps from seq 5 to 7 (a row was deleted or renumbered)."
    )


def test_swapped_rows(copy):
    columns = [f for f in ENTRY_FIELDS if f != "seq"]
    with raw(copy) as conn:
        five = conn.execute(f"SELECT {', '.join(columns)} FROM entries WHERE seq = 5").fetchone()
        six = conn.execute(f"SELECT {', '.join(columns)} FROM entries WHERE seq = 6").fetchone()
        assignments = ", ".join(f"{c} = ?" for c in columns)
        conn.execute(f"UPDATE entries SET {assignments} WHERE seq = 5", six)
        conn.execute(f"UPDATE entries SET {assignments} WHERE seq = 6", five)
    report = Ledger.verify_file(copy)
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "entry seq 5 was altered" in report.problem


def forged_entry(conn, *, seq: int, prev_hash: str, key: Ed25519PrivateKey) -> LedgerEntry:
    entry = LedgerEntry.unsigned(
        seq=seq,
        time="2026-11-29T12:00:00.000000Z",
        kind="uncovered",
        site_id=SITE,
        dataset=DATASET,
        project=PROJECT,
        actor="intruder",
        purpose="looks harmless",
        details_json=canonical({"what": "nothing to see"}),
        prev_hash=prev_hash,
        epsilon_after=None,
        delta=DELTA,
    )
    entry = dataclasses.replace(entry, signature=sign(key, entry.signed_message()))
    conn.execute(
        f"INSERT INTO entries ({', '.join(ENTRY_FIELDS)}) VALUES ({', '.join('?' for _ in ENTRY_FIELDS)})",
        tuple(getattr(entry, f) for f in ENTRY_FIELDS),
    )
    return entry


def test_inserted_row_in_the_middle(copy):
    with raw(copy) as conn:
        (prev,) = conn.execute("SELECT entry_hash FROM entries WHERE seq = 5").fetchone()
        conn.execute("UPDATE entries SET seq = -seq WHERE seq >= 6")
        conn.execute("UPDATE entries SET seq = 1 - seq WHERE seq < 0")
        forged_entry(conn, seq=6, prev_hash=prev, key=Ed25519PrivateKey.generate())
    report = Ledger.verify_file(copy)
    assert (report.ok, report.first_bad_seq) == (False, 6)
    assert "entry seq 6 has a signature that does not verify under the ledger's key" in report.problem


def test_forged_row_appended_at_the_end(copy):
    with raw(copy) as conn:
        (prev,) = conn.execute("SELECT entry_hash FROM entries WHERE seq = 11").fetchone()
        forged_entry(conn, seq=12, prev_hash=prev, key=Ed25519PrivateKey.generate())
    report = Ledger.verify_file(copy)
    assert (report.ok, report.first_bad_seq) == (False, 12)
    assert "signature that does not verify" in report.problem


def test_entry_signed_by_another_key(copy):
    other = Ed25519PrivateKey.generate()
    with raw(copy) as conn:
        (digest,) = conn.execute("SELECT entry_hash FROM entries WHERE seq = 5").fetchone()
        conn.execute("UPDATE entries SET signature = ? WHERE seq = 5", (sign(other, bytes.fromhex(digest)),))
    report = Ledger.verify_file(copy)
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "forged, or signed by another key" in report.problem


def test_dropped_tail_is_caught_by_checkpoint_not_by_chain_alone(copy, pristine):
    with raw(copy) as conn:
        conn.execute("DELETE FROM entries WHERE seq >= 10")  # two uncovered releases
    assert Ledger.verify_file(copy).ok  # a hash chain cannot see its own end cut off
    report = Ledger.verify_file(copy, checkpoint=pristine[1])
    assert (report.ok, report.first_bad_seq) == (False, 10)
    assert "the ledger ends at seq 9, but the checkpoint of" in report.problem
    assert "entries 10 to 11 were removed" in report.problem


def test_dropped_tail_is_caught_by_receipts(copy, pristine):
    with raw(copy) as conn:
        conn.execute("DELETE FROM entries WHERE seq >= 5")
    report = Ledger.verify_file(copy, receipts=pristine[2])
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "the coordinator holds a receipt for seq 5" in report.problem


def test_rewritten_entry_differs_from_receipt(copy, pristine):
    key = load_key(key_path=Path(f"{copy}.key"))
    rechain(copy, key, edit={5: {"purpose": "rewritten later"}})
    assert Ledger.verify_file(copy).ok  # the site re-signed its own history...
    report = Ledger.verify_file(copy, receipts=pristine[2], checkpoint=pristine[1])
    assert (report.ok, report.first_bad_seq) == (False, 5)  # ...but the coordinator kept proof
    assert "entry seq 5 differs from the receipt the coordinator holds" in report.problem


def test_under_reported_epsilon_is_caught_by_recomputing(copy):
    key = load_key(key_path=Path(f"{copy}.key"))
    rechain(copy, key, edit={5: {"epsilon_after": 0.01, "project_epsilon_after": 0.01}})
    report = Ledger.verify_file(copy, deep=True)
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "entry seq 5 reports epsilon_after 0.01, but its entries compose to" in report.problem


def test_signed_entry_with_an_unknown_mechanism(copy):
    key = load_key(key_path=Path(f"{copy}.key"))
    unknown = canonical({"format": "dp_accounting/0.6", "event": {"type": "ExponentialDpEvent"}})
    rechain(copy, key, edit={RESERVE_SEQ: {"mechanism": unknown}})
    report = Ledger.verify_file(copy)
    assert (report.ok, report.first_bad_seq) == (False, RESERVE_SEQ)
    assert report.problem.startswith(
        f"entry seq {RESERVE_SEQ} (reserve) cannot be replayed: Unknown mechanism 'ExponentialDpEvent'"
    )


def test_ledger_resigned_with_another_key(copy, pristine):
    original = fingerprint(public_hex(load_key(key_path=Path(f"{copy}.key"))))
    rechain(copy, Ed25519PrivateKey.generate(), edit={})
    assert Ledger.verify_file(copy).ok  # self-consistent, under the impostor's key
    report = Ledger.verify_file(copy, public_key=original)
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert f"not the expected key {original}: it was re-signed" in report.problem
    report = Ledger.verify_file(copy, checkpoint=pristine[1])
    assert "checkpoint for seq 11 is not signed by this ledger's key" in report.problem
    with pytest.raises(LedgerError, match=r"written with the key it was created with"):
        Ledger.open(copy, site_id=SITE)


@pytest.mark.parametrize(
    ("statement", "table"),
    [
        ("UPDATE counts SET count = count - 1", "counts"),
        (f"UPDATE reservations SET status = 'aborted' WHERE seq = {OPEN_SEQ}", "reservations"),
        ("UPDATE limits SET epsilon = 30.0 WHERE project = ''", "limits"),
    ],
)
def test_derived_tables_are_never_trusted(copy, statement, table):
    with raw(copy) as conn:
        conn.execute(statement)
    report = Ledger.verify_file(copy)
    assert not report.ok and report.first_bad_seq is None
    assert f"the derived table '{table}' disagrees with the entries" in report.problem


def rechain(path: Path, key: Ed25519PrivateKey, *, edit: dict[int, dict]) -> None:
    """Rewrite entries (with ``edit``), then re-hash and re-sign the whole chain with ``key``."""
    with raw(path) as conn:
        rows = conn.execute(f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries ORDER BY seq").fetchall()
        prev = "0" * 64
        for row in rows:
            entry = LedgerEntry(*row)
            changes = dict(edit.get(entry.seq, {}), prev_hash=prev)
            if entry.kind == "genesis":
                details = {**entry.details, "public_key": public_hex(key), "fingerprint": fingerprint(public_hex(key))}
                changes["details_json"] = canonical(details)
            entry = dataclasses.replace(entry, **changes)
            entry = dataclasses.replace(entry, entry_hash=entry.compute_hash())
            entry = dataclasses.replace(entry, signature=sign(key, entry.signed_message()))
            conn.execute(
                f"UPDATE entries SET {', '.join(f'{f} = ?' for f in ENTRY_FIELDS)} WHERE seq = ?",
                (*[getattr(entry, f) for f in ENTRY_FIELDS], entry.seq),
            )
            prev = entry.entry_hash
