"""An insider with write access to the state folder puts the audit log back from an older
copy, in place or as another file, while a node process has already read it: the anchors
check (read once per process, then only what was appended) finds what a reading of the
whole file finds, never an anchor the restored log no longer holds, and never misses one
appended after its last read, a half-written line included."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from federation.site.anchors import audit_anchors, forget_audit_reads
from federation.site.audit import append_audit, utc_now


@pytest.fixture(autouse=True)
def fresh_memo():
    forget_audit_reads()
    yield
    forget_audit_reads()


def _request(path: Path, *seqs: int) -> None:
    append_audit(path=path, entry={"kind": "request", "time": utc_now(), "ledger_entries": list(seqs)})


def _head(path: Path, seq: int) -> None:
    append_audit(
        path=path, entry={"kind": "audit_head", "time": utc_now(), "ledger_seq": seq, "ledger_hash": f"hash-{seq}"}
    )


def _whole_file(path: Path) -> set[tuple[int, str | None]]:
    """The two anchors by reading every line of the file, independently of the code."""
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    heads = [r["ledger_seq"] for r in records if r.get("kind") == "audit_head"]
    named = [s for r in records for s in r.get("ledger_entries") or []]
    found = set()
    if heads:
        found.add((max(heads), f"hash-{max(heads)}"))
    if named:
        found.add((max(named), None))
    return found


def _asked(path: Path) -> set[tuple[int, str | None]]:
    return {(a.seq, a.head_hash) for a in audit_anchors(path)}


def test_each_ask_finds_the_lines_appended_since_the_last(tmp_path):
    log = tmp_path / "audit.jsonl"
    assert audit_anchors(log) == []  # no log yet
    _request(log, 1, 2)
    _head(log, 2)
    assert _asked(log) == _whole_file(log) == {(2, "hash-2"), (2, None)}
    _request(log, 3)
    _request(log, 4, 5)
    assert _asked(log) == _whole_file(log) == {(2, "hash-2"), (5, None)}
    _head(log, 5)
    _request(log)  # a refused request names no entry
    assert _asked(log) == _whole_file(log) == {(5, "hash-5"), (5, None)}


def test_a_line_still_being_written_is_read_once_it_is_whole(tmp_path):
    log = tmp_path / "audit.jsonl"
    _request(log, 1)
    assert _asked(log) == {(1, None)}
    line = json.dumps({"kind": "request", "time": utc_now(), "ledger_entries": [7]}).encode()
    with log.open("ab") as fh:  # another process is half-way through its line
        fh.write(line[:20])
    assert _asked(log) == {(1, None)}
    with log.open("ab") as fh:
        fh.write(line[20:] + b"\n")
    assert _asked(log) == _whole_file(log) == {(7, None)}


def test_a_log_put_back_in_place_from_an_older_copy_is_read_again(tmp_path):
    log = tmp_path / "audit.jsonl"
    _request(log, 1)
    _head(log, 1)
    older = log.read_bytes()
    _request(log, 2, 3)
    _head(log, 3)
    assert _asked(log) == {(3, "hash-3"), (3, None)}
    inode = log.stat().st_ino
    log.write_bytes(older)  # shorter, same file
    assert log.stat().st_ino == inode
    assert _asked(log) == _whole_file(log) == {(1, "hash-1"), (1, None)}


def test_a_log_replaced_by_another_file_is_read_again(tmp_path):
    log = tmp_path / "audit.jsonl"
    _request(log, 1)
    _head(log, 1)
    shutil.copy(log, tmp_path / "older.jsonl")
    _request(log, 2)
    assert _asked(log) == {(1, "hash-1"), (2, None)}
    other = tmp_path / "other.jsonl"
    shutil.copy(tmp_path / "older.jsonl", other)
    for seq in (1, 1, 1, 1):  # longer than what was read: only its inode tells it apart
        _request(other, seq)
    assert other.stat().st_size > log.stat().st_size
    os.replace(other, log)
    assert _asked(log) == _whole_file(log) == {(1, "hash-1"), (1, None)}
    log.unlink()
    assert audit_anchors(log) == []
