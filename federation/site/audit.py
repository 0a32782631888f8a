"""The site's audit log: one hash-chained JSON line per request, in ``state_dir/audit.jsonl``.

Each line carries ``seq`` (1, 2, ...), ``prev`` (the ``hash`` of the line before; 64
zeros for the first) and ``hash`` (sha256 of the line's canonical JSON without
``hash``). Editing, deleting, inserting or reordering a line breaks the chain at that
line, and ``verify_audit`` names it. Cutting lines off the END leaves a shorter valid
chain; that is caught only against a head hash seen earlier (``node status`` prints
it; pass it as ``head=``), as for any hash chain without an outside anchor.

Appends take an exclusive ``flock`` on the file (Flower may run several ClientApp
processes at once), write the line with one ``write`` and ``fsync`` it. A crash in
the middle of a write leaves a torn last line (no newline): ``verify_audit`` reports
it as torn, not as tampering, and the next append cuts it off and first writes a
``repair`` line recording how many bytes were removed and their sha256, so the
repair itself is part of the chain.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the ledger's format: sorts as text
_CHUNK = 64 * 1024
_KEPT_TORN_TEXT = 2000  # characters of a torn line kept in its repair note, for forensics


def utc_now() -> str:
    """Now, in UTC, as the audit log and the ledger write times."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def audit_path(state_dir: Path) -> Path:
    return Path(state_dir) / AUDIT_FILE


def line_hash(record: dict[str, Any]) -> str:
    """sha256 of the record's canonical JSON, its own ``hash`` left out."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# A signed head line (``audit_heads.py``) follows at least every this many lines.
HEAD_EVERY = 100
Seal = Callable[[int, str], dict[str, Any]]  # (seq, hash) of the line before -> a signed head line


def append_audit(*, path: Path, entry: dict[str, Any] | None, seal: Seal | None = None) -> dict[str, Any]:
    """Append ``entry`` (JSON-able, without seq/prev/hash) as one chained line; returns it.

    With ``seal`` (a writer holding the node's key), a signed head line follows it, under
    the same lock, when its seq is a multiple of HEAD_EVERY; ``entry=None`` writes only a
    signed head (at every start and check)."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last, torn_at = _last_line(fd)
        head = _head_of(last)
        if torn_at is not None:
            head = _repair_torn_tail(fd, torn_at=torn_at, head=head)
        written = None
        if entry is not None:
            written = _write(fd, entry, head)
            head = (written["seq"] or -1, written["hash"])
        if seal is not None and (entry is None or head[0] % HEAD_EVERY == 0):
            sealed = _write(fd, seal(*head), head)
            written = written or sealed
        os.fsync(fd)
        return written
    finally:
        os.close(fd)  # closing releases the lock


def _head_of(last: bytes | None) -> tuple[int, str]:
    """(seq, hash) of the last complete line; a line that cannot be read still chains,
    by the hash of its bytes, and verification flags it."""
    if last is None:
        return 0, GENESIS
    try:
        record = json.loads(last)
        return int(record["seq"]), str(record["hash"])
    except (ValueError, KeyError, TypeError):
        return -1, hashlib.sha256(last).hexdigest()


def _write(fd: int, entry: dict[str, Any], head: tuple[int, str]) -> dict[str, Any]:
    seq, prev = head
    record = {k: v for k, v in entry.items() if k not in ("seq", "prev", "hash")}
    record = {"seq": seq + 1 if seq >= 0 else None, **record, "prev": prev}
    record["hash"] = line_hash(record)
    data = (json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode()
    os.write(fd, data)  # O_APPEND: one write lands at the end as a whole
    return record


def _repair_torn_tail(fd: int, *, torn_at: int, head: tuple[int, str]) -> tuple[int, str]:
    size = os.fstat(fd).st_size
    torn = os.pread(fd, size - torn_at, torn_at)
    os.ftruncate(fd, torn_at)
    note = _write(
        fd,
        {
            "kind": "repair",
            "time": utc_now(),
            "note": (
                f"removed a torn last line of {len(torn)} bytes: an append was cut off "
                "(a crash or a full disk) before its newline"
            ),
            "removed_bytes": len(torn),
            "removed_sha256": hashlib.sha256(torn).hexdigest(),
            "removed_text": torn[:_KEPT_TORN_TEXT].decode("utf-8", errors="replace"),
        },
        head,
    )
    return note["seq"], note["hash"]


def _last_line(fd: int) -> tuple[bytes | None, int | None]:
    """The last complete line (without newline), and the offset of a torn tail if any."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None, None
    tail_end = size
    torn_at = None
    if os.pread(fd, 1, size - 1) != b"\n":
        start = _line_start(fd, size)
        torn_at, tail_end = start, start
        if start == 0:
            return None, torn_at
    start = _line_start(fd, tail_end - 1)
    return os.pread(fd, tail_end - 1 - start, start), torn_at


def _line_start(fd: int, end: int) -> int:
    """Offset just after the last newline before ``end`` (0 if none)."""
    pos = end
    while pos > 0:
        begin = max(0, pos - _CHUNK)
        chunk = os.pread(fd, pos - begin, begin)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        pos = begin
    return 0


def recent_entries(*, path: Path, since: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The newest readable lines, newest first: back to time ``since`` or ``limit`` lines.

    Reads the file backwards, so it stays quick on a log of years; a torn or unreadable
    line is skipped (``verify_audit`` is where those are reported).
    """
    found: list[dict[str, Any]] = []
    for raw in _lines_backwards(Path(path)):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if since is not None and str(record.get("time", "")) < since:
            break
        found.append(record)
        if limit is not None and len(found) >= limit:
            break
    return found


def count_recent(
    *, path: Path, since: str, kind: str, contains: str, where: Callable[[dict[str, Any]], bool] | None = None
) -> int:
    """How many lines of ``kind`` written at or after ``since`` hold the text ``contains``
    (and, when ``where`` is given, whose record it accepts).

    The repeated-query check runs this on every request, so it stays cheap on a long
    window: a block of lines that lies wholly inside the window is searched as bytes,
    and only lines holding the text, and each block's oldest line, are parsed.
    """
    needle = contains.encode("utf-8")

    def matches(line: bytes) -> bool:
        if needle not in line:
            return False
        try:
            record = json.loads(line)
        except ValueError:
            return False
        return isinstance(record, dict) and record.get("kind") == kind and (where is None or bool(where(record)))

    count = 0
    for block in _blocks_backwards(Path(path)):
        oldest = _field(block[0], "time")
        if oldest is None or str(oldest) >= since:
            count += sum(1 for line in block if matches(line))
            continue
        for line in reversed(block):  # the window starts inside this block
            when = _field(line, "time")
            if when is not None and str(when) < since:
                break
            count += matches(line)
        break
    return count


def _field(line: bytes, key: str) -> Any:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get(key) if isinstance(record, dict) else None


def _lines_backwards(path: Path) -> Iterator[bytes]:
    for block in _blocks_backwards(path):
        yield from reversed(block)


def _blocks_backwards(path: Path) -> Iterator[list[bytes]]:
    """The file's non-empty lines in blocks of about _CHUNK bytes, newest block first,
    each block in file order."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        pos = os.fstat(fd).st_size
        rest = b""
        while pos > 0:
            begin = max(0, pos - _CHUNK)
            rest = os.pread(fd, pos - begin, begin) + rest
            pos = begin
            lines = rest.split(b"\n")
            rest = lines[0]  # may continue in the block before
            block = [line for line in lines[1:] if line]
            if block:
                yield block
        if rest:
            yield [rest]
    finally:
        os.close(fd)


# --- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class AuditVerification:
    """What ``verify_audit`` found. ``ok`` is False when a line was edited, deleted,
    inserted or reordered (``first_bad_line``, 1-based, and ``problem`` say where and
    what); a torn last line is reported in ``torn_tail`` and is not tampering."""

    path: Path
    lines: int
    ok: bool
    first_bad_line: int | None
    problem: str
    torn_tail: bool
    repairs: int
    head: str
    signed_heads: int = 0  # head lines whose signature proves the lines before them
    last_signed_line: int = 0  # the newest such line (0: none)

    def describe(self) -> str:
        if not self.ok:
            return f"{self.path}: TAMPERED at line {self.first_bad_line}: {self.problem}"
        text = f"{self.path}: ok, {self.lines} lines, chain intact; head {self.head}"
        if self.signed_heads:
            text += (
                f"; {self.signed_heads} signed head(s), the last at line {self.last_signed_line} "
                f"({self.lines - self.last_signed_line} line(s) after it)"
            )
        if self.repairs:
            text += f"; {self.repairs} torn line(s) repaired earlier, recorded in the chain"
        if self.torn_tail:
            text += (
                f"; line {self.lines + 1} is torn (an append was cut off, e.g. by a crash): "
                "the next request's append removes it and records a repair line"
            )
        return text


def verify_audit(path: Path, *, head: str | None = None, public_keys: set[str] | None = None) -> AuditVerification:
    """Check every line's hash, sequence and link to the line before, and every signed head.

    ``head`` is a line hash seen earlier (e.g. printed by ``node status``): the check
    fails if no line carries it, which is how cutting lines off the end shows.
    ``public_keys`` (hex) are the keys a signed head may be signed with: the ledger's
    (``audit_heads.py``); without them a head is checked under the key it names.
    A head that does not prove the lines before it fails the check at the first line
    after the last good signature, and the problem names the head.
    """
    from federation.site.audit_heads import HEAD_KIND, head_problem

    path = Path(path)
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # text after the last newline: an append cut off
    prev, repairs, seen_head = GENESIS, 0, head is None
    signed, last_signed = 0, 0

    def bad(number: int, problem: str) -> AuditVerification:
        return AuditVerification(
            path=path,
            lines=len(lines),
            ok=False,
            first_bad_line=number,
            problem=problem,
            torn_tail=torn,
            repairs=repairs,
            head=prev,
            signed_heads=signed,
            last_signed_line=last_signed,
        )

    for number, raw in enumerate(lines, start=1):
        try:
            record = json.loads(raw)
            claimed, seq, link = record["hash"], record["seq"], record["prev"]
        except (ValueError, KeyError, TypeError):
            return bad(number, "it is not an audit record (a line written or edited by hand)")
        if line_hash(record) != claimed:
            return bad(number, "it was edited: its content no longer matches its hash")
        if seq != number:
            if isinstance(seq, int) and seq > number:
                return bad(
                    number,
                    f"it has seq {seq} where {number} was expected: "
                    f"{seq - number} line(s) before it were deleted, or lines were reordered",
                )
            return bad(
                number, f"it has seq {seq!r} where {number} was expected: a line was inserted, or lines were reordered"
            )
        if link != prev:
            return bad(
                number,
                "it does not follow the line before it (its prev hash differs): "
                "a line was deleted, inserted or reordered here",
            )
        if record.get("kind") == HEAD_KIND:
            why = head_problem(record, seq_before=number - 1, hash_before=prev, keys=public_keys)
            if why is not None:
                return bad(
                    last_signed + 1,
                    f"the signed head at line {number} does not prove the lines before it: {why}. The log is "
                    f"proven up to line {last_signed} (the last good signature); from line {last_signed + 1} on it "
                    "may have been rewritten",
                )
            signed, last_signed = signed + 1, number
        prev = claimed
        repairs += record.get("kind") == "repair"
        seen_head = seen_head or claimed == head
    if not seen_head:
        return AuditVerification(
            path=path,
            lines=len(lines),
            ok=False,
            first_bad_line=len(lines) + 1,
            problem=f"no line has the head hash {head} seen earlier: lines were cut off the end, "
            "or the log was rewritten",
            torn_tail=torn,
            repairs=repairs,
            head=prev,
            signed_heads=signed,
            last_signed_line=last_signed,
        )
    return AuditVerification(
        path=path,
        lines=len(lines),
        ok=True,
        first_bad_line=None,
        problem="",
        torn_tail=torn,
        repairs=repairs,
        head=prev,
        signed_heads=signed,
        last_signed_line=last_signed,
    )
