"""The audit log: a hash chain whose every kind of tampering is named at its line, a
torn tail that is reported as such and repaired on the next append, and appends from
several processes that never interleave."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from federation.site.audit import GENESIS, append_audit, line_hash, recent_entries, verify_audit


def _log(path: Path, n: int) -> list[dict]:
    return [
        append_audit(path=path, entry={"kind": "request", "time": f"2026-11-29T10:00:0{i}.000000Z", "n": i})
        for i in range(n)
    ]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_lines_chain_from_genesis_and_verify(tmp_path):
    path = tmp_path / "audit.jsonl"
    written = _log(path, 4)
    assert [r["seq"] for r in written] == [1, 2, 3, 4]
    assert written[0]["prev"] == GENESIS and all(
        b["prev"] == a["hash"] for a, b in zip(written, written[1:], strict=False)
    )
    assert all(line_hash(json.loads(line)) == json.loads(line)["hash"] for line in _lines(path))
    result = verify_audit(path)
    assert result.ok and result.lines == 4 and result.head == written[-1]["hash"] and not result.torn_tail
    assert [e["n"] for e in recent_entries(path=path, limit=2)] == [3, 2]


def test_an_edited_line_is_named(tmp_path):
    path = tmp_path / "audit.jsonl"
    _log(path, 4)
    lines = _lines(path)
    lines[1] = lines[1].replace('"n":1', '"n":7')
    path.write_text("".join(lines))
    result = verify_audit(path)
    assert not result.ok and result.first_bad_line == 2 and "edited" in result.problem
    assert "TAMPERED at line 2" in result.describe()


def test_a_deleted_line_is_named(tmp_path):
    path = tmp_path / "audit.jsonl"
    _log(path, 4)
    lines = _lines(path)
    del lines[1]
    path.write_text("".join(lines))
    result = verify_audit(path)
    assert not result.ok and result.first_bad_line == 2 and "1 line(s) before it were deleted" in result.problem


def test_reordered_lines_are_named(tmp_path):
    path = tmp_path / "audit.jsonl"
    _log(path, 4)
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    result = verify_audit(path)
    assert not result.ok and result.first_bad_line == 2 and "reordered" in result.problem


def test_an_inserted_line_is_named_even_with_a_valid_hash_of_its_own(tmp_path):
    path = tmp_path / "audit.jsonl"
    written = _log(path, 3)
    forged = {"seq": 2, "kind": "request", "time": "2026-11-29T10:00:01.500000Z", "n": 99, "prev": written[0]["hash"]}
    forged["hash"] = line_hash(forged)
    lines = _lines(path)
    lines.insert(1, json.dumps(forged) + "\n")
    path.write_text("".join(lines))
    result = verify_audit(path)
    assert not result.ok and result.first_bad_line == 3 and "inserted" in result.problem


def test_a_line_cut_off_the_end_shows_against_a_head_seen_earlier(tmp_path):
    path = tmp_path / "audit.jsonl"
    written = _log(path, 3)
    path.write_text("".join(_lines(path)[:2]))
    assert verify_audit(path).ok  # a shorter chain is a valid chain ...
    result = verify_audit(path, head=written[-1]["hash"])  # ... but not the one seen before
    assert not result.ok and "cut off the end" in result.problem
    assert verify_audit(path, head=written[1]["hash"]).ok


def test_a_torn_tail_is_reported_then_repaired_by_the_next_append(tmp_path):
    path = tmp_path / "audit.jsonl"
    _log(path, 2)
    torn = '{"seq":3,"kind":"request","ti'
    with path.open("a") as f:
        f.write(torn)  # a crash in the middle of a write
    result = verify_audit(path)
    assert result.ok and result.torn_tail and result.lines == 2 and "line 3 is torn" in result.describe()

    after = append_audit(path=path, entry={"kind": "request", "n": 3})
    records = [json.loads(line) for line in _lines(path)]
    assert [r["kind"] for r in records] == ["request", "request", "repair", "request"]
    repair = records[2]
    assert repair["removed_bytes"] == len(torn) and repair["removed_text"] == torn
    assert after["seq"] == 4 and after["prev"] == repair["hash"]
    result = verify_audit(path)
    assert result.ok and not result.torn_tail and result.repairs == 1 and result.lines == 4


def test_a_log_that_is_only_a_torn_line_is_repaired_too(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"seq":1,"ki')
    append_audit(path=path, entry={"kind": "request"})
    result = verify_audit(path)
    assert result.ok and result.repairs == 1 and result.lines == 2


def _append_many(path: str, worker: int, n: int) -> None:
    for i in range(n):
        append_audit(path=Path(path), entry={"kind": "request", "worker": worker, "i": i, "pad": "x" * 3000})


def test_appends_from_several_processes_keep_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w, 25)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    result = verify_audit(path)
    assert result.ok and result.lines == 100 and not result.torn_tail
    seen = {(r["worker"], r["i"]) for r in map(json.loads, _lines(path))}
    assert seen == {(w, i) for w in range(4) for i in range(25)}


@pytest.mark.parametrize("garbage", ["not json\n", "[1, 2]\n", "\n"])
def test_a_line_that_is_not_a_record_is_named(tmp_path, garbage):
    path = tmp_path / "audit.jsonl"
    _log(path, 2)
    with path.open("a") as f:
        f.write(garbage)
    result = verify_audit(path)
    assert not result.ok and result.first_bad_line == 3 and "not an audit record" in result.problem


def test_counting_recent_requests_stops_at_the_window_across_blocks(tmp_path):
    """The repeated-query count: only lines of the kind, inside the window, holding the text;
    over a log larger than one read block (64 KB), old lines first."""
    from federation.site.audit import count_recent

    path = tmp_path / "audit.jsonl"
    for i in range(600):
        when = "2020-01-01T00:00:00.000000Z" if i < 300 else f"2026-11-29T10:{i // 60:02d}:{i % 60:02d}.000000Z"
        append_audit(
            path=path,
            entry={
                "kind": "request" if i % 7 else "alert",
                "time": when,
                "request_hash": "aa" if i % 2 else "bb",
                "pad": "x" * 300,
            },
        )
    assert path.stat().st_size > 3 * 64 * 1024
    expected = sum(1 for i in range(300, 600) if i % 2 and i % 7)
    assert (
        count_recent(path=path, since="2026-11-29T00:00:00.000000Z", kind="request", contains='"request_hash":"aa"')
        == expected
    )
    everything = sum(1 for i in range(600) if i % 2 and i % 7)
    assert (
        count_recent(path=path, since="2019-01-01T00:00:00.000000Z", kind="request", contains='"request_hash":"aa"')
        == everything
    )
    assert (
        count_recent(path=path, since="2027-01-01T00:00:00.000000Z", kind="request", contains='"request_hash":"aa"')
        == 0
    )
