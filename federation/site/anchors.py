"""Anchors: the ledger heads this node recorded outside its ledger, and the rule that
the ledger is never behind any of them.

A hash chain cannot see its own newest entries removed, nor a whole file put back from
an older copy: both leave a shorter chain that verifies. But the node has written its
ledger's head in other places as it went:

- its **audit log**: every signed head line (``audit_heads.py``) holds the ledger's
  head, and every request line the seqs of the entries it charged;
- its **replay cache**: every released answer keeps the signed receipts of its release;
- its **key folder**: ``last_head.json``, the newest head the node signed (the key
  folder is not the state folder: whoever restores the state folder from a backup does
  not restore it);
- the ethics board's **last checkpoint** (``[state] checkpoint`` in node.toml).

At every start, in ``node check`` and before every request it serves (``refuse_if_behind``,
called by the policy gate: training, evaluation, range finding, every query, a replayed
answer and a query's price alike) the ledger's head must be at or beyond each of them,
and hold the same entry at each anchored seq. Otherwise the node refuses to serve,
naming the head, where it was recorded, and what to do (the requester learns only that
the site releases nothing). A ledger restored from backup
is accepted only at or beyond the last anchored head: an older backup would erase
recorded spending, so it is never the fix. The coordinator's mirror of receipts holds
the same heads outside the site (``federation/coordinator/head_chain.py``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from federation.errors import InternalFault
from federation.site.audit import recent_entries
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger
from privacy_budgets.errors import LedgerIntegrityError, PrivacyBudgetError

LAST_HEAD_FILE = "last_head.json"
_AUDIT_LOOKBACK = 5_000  # lines read back from the end (several signed heads' worth)


class LedgerBehind(LedgerIntegrityError, InternalFault):
    """The ledger is behind a head this node recorded elsewhere: rolled back or rewritten.
    A broken record (exit 4), and to a requester an internal fault: only ``public`` (that
    the site releases nothing) leaves the site; which head, where, stays here."""

    def __init__(self, reason: str, *, site_id: str = "") -> None:
        InternalFault.__init__(self, reason, public=public_behind(site_id))


def public_behind(site_id: str) -> str:
    """What a requester is told of a ledger behind its anchors (never which head, nor where)."""
    return (
        f"site {site_id or '(this site)'} releases nothing: its privacy ledger is behind a head it recorded earlier "
        "(an older copy was put in place, or its history rewritten). Nothing was computed or charged; its IT sees "
        "where in the site's audit log."
    )


@dataclass(frozen=True)
class Anchor:
    """A ledger head recorded outside the ledger: ``seq``, its entry hash when known."""

    source: str
    where: Path
    seq: int
    head_hash: str | None
    time: str | None = None

    def describe(self) -> str:
        when = f" at {self.time}" if self.time else ""
        what = f"seq {self.seq}" + (f" ({self.head_hash[:12]}...)" if self.head_hash else "")
        return f"the {self.source} ({self.where}) recorded ledger {what}{when}"


# --- where the heads are --------------------------------------------------------------------


@dataclass(frozen=True)
class _AuditMemo:
    """What one process has read of one audit log: the file (device, inode), how far
    (the end of its last whole line), and the two anchors found so far."""

    device: int
    inode: int
    offset: int
    head: Anchor | None
    highest: Anchor | None


# path -> what was read of it: the gate asks before every request, and decoding the log's
# last _AUDIT_LOOKBACK lines each time cost a busy node about 40% of its time. The log only
# grows, so a later ask reads the lines appended since. A file replaced (another inode) or
# shorter than what was read is read again from its end. Lines read twice change nothing
# (the anchors are maxima), and what a memo remembers can only make the check stricter.
_AUDIT_MEMO: dict[str, _AuditMemo] = {}


def forget_audit_reads() -> None:
    """Forget what this process read of every audit log: the next ask reads each again
    from its end (as a new process does)."""
    _AUDIT_MEMO.clear()


def audit_anchors(path: Path) -> list[Anchor]:
    """The highest ledger head a signed head line holds, and the highest entry a request
    line names, among the log's last lines (those read earlier by this process included)."""
    path = Path(path)
    key = str(path.resolve())
    try:
        stat = path.stat()
    except FileNotFoundError:
        _AUDIT_MEMO.pop(key, None)
        return []
    memo = _AUDIT_MEMO.get(key)
    if memo is not None and (memo.device, memo.inode) == (stat.st_dev, stat.st_ino) and memo.offset <= stat.st_size:
        head, highest, offset = _fold_appended(path, memo=memo, size=stat.st_size)
    else:
        offset = _end_of_last_line(path, size=stat.st_size)
        head, highest = _fold(recent_entries(path=path, limit=_AUDIT_LOOKBACK), path=path)
    _AUDIT_MEMO[key] = _AuditMemo(stat.st_dev, stat.st_ino, offset, head, highest)
    return [a for a in (head, highest) if a is not None]


def _fold(records: Iterable[dict], *, path: Path) -> tuple[Anchor | None, Anchor | None]:
    """The two anchors among ``records``, newest first (an equal seq keeps the newest line)."""
    head: Anchor | None = None
    highest: Anchor | None = None
    for record in records:
        seq = record.get("ledger_seq")
        if record.get("kind") == "audit_head" and isinstance(seq, int) and (head is None or seq > head.seq):
            head = Anchor("audit log", path, seq, record.get("ledger_hash"), record.get("time"))
        seqs = [s for s in record.get("ledger_entries") or [] if isinstance(s, int)]
        if seqs and (highest is None or max(seqs) > highest.seq):
            highest = Anchor("audit log", path, max(seqs), None, record.get("time"))
    return head, highest


def _fold_appended(path: Path, *, memo: _AuditMemo, size: int) -> tuple[Anchor | None, Anchor | None, int]:
    """The memo's anchors with the whole lines appended since it was made."""
    with path.open("rb") as fh:
        fh.seek(memo.offset)
        appended = fh.read(size - memo.offset)
    whole = appended[: appended.rfind(b"\n") + 1]  # a line still being written waits for the next ask
    records = []
    for line in whole.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # torn or unreadable: verify_audit reports those
        if isinstance(record, dict):
            records.append(record)
    head, highest = _fold(reversed(records), path=path)
    return _newer(memo.head, head), _newer(memo.highest, highest), memo.offset + len(whole)


def _newer(old: Anchor | None, new: Anchor | None) -> Anchor | None:
    return new if new is not None and (old is None or new.seq >= old.seq) else old


def _end_of_last_line(path: Path, *, size: int) -> int:
    """Where the last whole line within the first ``size`` bytes ends."""
    with path.open("rb") as fh:
        pos = size
        while pos > 0:
            begin = max(0, pos - 65536)
            fh.seek(begin)
            cut = fh.read(pos - begin).rfind(b"\n")
            if cut >= 0:
                return begin + cut + 1
            pos = begin
    return 0


# folder -> (the cache files' stat, its anchor): the gate asks before every request, and
# reading every kept answer each time would grow with the cache. Any write, or a folder
# put back from a copy, changes the stat and the anchor is read again.
_CACHE_MEMO: dict[str, tuple[tuple, Anchor | None]] = {}


def _cache_stat(folder: Path) -> tuple:
    out = []
    for name in ("cache.db", "cache.db-wal"):
        try:
            st = (Path(folder) / name).stat()
            out.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((name, None))
    return tuple(out)


def cache_anchor(folder: Path) -> Anchor | None:
    """The newest receipt among the released answers kept for replay."""
    if not Path(folder).is_dir():
        return None
    key = str(Path(folder).resolve())
    stat = _cache_stat(folder)
    memo = _CACHE_MEMO.get(key)
    if memo is not None and memo[0] == stat:
        return memo[1]
    found = _read_cache_anchor(Path(folder))
    after = _cache_stat(folder)
    if after != stat:  # written while read (or SQLite made its -wal file): read once more
        found = _read_cache_anchor(Path(folder))
        stat, after = after, _cache_stat(folder)
    if after == stat:  # unchanged while read: keep it
        _CACHE_MEMO[key] = (stat, found)
    return found


def _read_cache_anchor(folder: Path) -> Anchor | None:
    """Read-only, straight from the cache's SQLite file: diskcache's own open writes to
    it (which would defeat the memo above, and a check should change nothing)."""
    from diskcache.core import MODE_RAW, MODE_TEXT

    database = Path(folder) / "cache.db"
    if not database.exists():
        return None
    best = None
    with _read_only(database) as conn:
        rows = conn.execute("SELECT mode, filename, value FROM Cache").fetchall()
    for mode, filename, value in rows:
        if mode == MODE_TEXT and filename:
            value = (Path(folder) / filename).read_text(encoding="UTF-8")
        elif mode != MODE_RAW:
            continue
        if not isinstance(value, str) or not value.startswith("{"):
            continue  # the data version marker
        for receipt in json.loads(value).get("receipts", []):
            if isinstance(receipt.get("seq"), int) and (best is None or receipt["seq"] > best["seq"]):
                best = receipt
    if best is None:
        return None
    return Anchor("replay cache", Path(folder), best["seq"], best.get("entry_hash"), best.get("time"))


def key_folder_anchor(site: SiteConfig) -> Anchor | None:
    """The newest head the node signed, as kept in its key folder."""
    path = site.ledger_key_path.parent / LAST_HEAD_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data.get("seq"), int):
        return None
    return Anchor("key folder", path, data["seq"], data.get("head_hash"), data.get("time"))


def checkpoint_anchor(path: Path | None, *, keys: list[str]) -> Anchor | None:
    """The board's last checkpoint; one not signed by the ledger's key is refused."""
    if path is None:
        return None
    from privacy_budgets.checkpoints import checkpoint_verifies, load_checkpoint

    cp = load_checkpoint(path)
    if not any(checkpoint_verifies(cp, public_key=k) for k in keys):
        raise LedgerBehind(
            f"The board's checkpoint must be signed by this ledger's key; {path} is not (seq {cp['seq']}). Fix: ask "
            "the board for the checkpoint it holds for this site ([state] checkpoint in node.toml).",
            site_id="",
        )
    return Anchor("board checkpoint", Path(path), cp["seq"], cp["head_hash"], cp.get("time"))


def record_last_head(site: SiteConfig, *, seq: int, head_hash: str, time: str) -> None:
    """Keep the newest signed head in the key folder (never moving it back)."""
    folder = site.ledger_key_path.parent
    path = folder / LAST_HEAD_FILE
    current = key_folder_anchor(site)
    if current is not None and current.seq >= seq:
        return
    tmp = folder / f".{LAST_HEAD_FILE}.{os.getpid()}.{uuid.uuid4().hex}.tmp"  # threads of one process too
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"site": site.site_id, "seq": seq, "head_hash": head_hash, "time": time}, handle)
    os.replace(tmp, path)


# --- the rule ---------------------------------------------------------------------------------


def local_anchors(site: SiteConfig, *, board_checkpoint: Path | None = None) -> list[Anchor]:
    """Every head this node recorded outside its ledger (see the module docstring)."""
    from federation.site.audit import audit_path

    with _read_only(site.ledger_path) as conn:
        from privacy_budgets import store

        keys = store.public_keys(conn)
    anchors = audit_anchors(audit_path(site.state_dir))
    for found in (
        cache_anchor(site.analytics_cache_dir),
        key_folder_anchor(site),
        checkpoint_anchor(board_checkpoint, keys=keys),
    ):
        if found is not None:
            anchors.append(found)
    return anchors


def check_not_behind(site: SiteConfig, *, board_checkpoint: Path | None = None) -> tuple[tuple[int, str], list[Anchor]]:
    """The ledger's head and the anchors it meets; raises LedgerBehind naming the first it
    does not meet (the highest seq first), with what to do."""
    if not site.ledger_path.exists():
        anchors = local_anchors_without_ledger(site)
        if anchors:
            raise LedgerBehind(behind_message(site, (0, "none"), anchors[0], missing=True), site_id=site.site_id)
        return (0, ""), []
    anchors = local_anchors(site, board_checkpoint=board_checkpoint)
    with _read_only(site.ledger_path) as conn:
        row = conn.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        head = (0, "") if row is None else (int(row[0]), str(row[1]))
        for anchor in sorted(anchors, key=lambda a: -a.seq):
            if anchor.seq > head[0]:
                raise LedgerBehind(behind_message(site, head, anchor), site_id=site.site_id)
            if anchor.head_hash:
                at = conn.execute("SELECT entry_hash FROM entries WHERE seq = ?", (anchor.seq,)).fetchone()
                if at is None or at[0] != anchor.head_hash:
                    raise LedgerBehind(behind_message(site, head, anchor, forked=True), site_id=site.site_id)
    return head, anchors


def refuse_if_behind(site: SiteConfig, *, board_checkpoint: Path | None = None) -> None:
    """The one anchors check of every request a site serves (the policy gate calls it
    first, before any handler: a fresh or replayed answer, a training round, a query's
    price). Raises LedgerBehind (an InternalFault: its public words say only that the
    site releases nothing), or an InternalFault when the heads cannot be read at all
    (fail closed)."""
    try:
        check_not_behind(site, board_checkpoint=board_checkpoint)
    except LedgerBehind:
        raise
    except (OSError, ValueError, sqlite3.Error, PrivacyBudgetError) as err:
        raise InternalFault(
            f"site {site.site_id} cannot compare its ledger with the heads it recorded, so it serves nothing: "
            f"{type(err).__name__}: {err}",
            public=f"site {site.site_id} cannot check its privacy ledger, so it releases nothing; its IT sees why "
            "in the site's audit log.",
        ) from None


def refuse_charge_if_behind(*, ledger: Ledger, site: SiteConfig) -> None:
    """Inside the charged path's transaction: the open ledger is not behind the newest head
    the key folder remembers (the ledger may be swapped between the gate and the charge)."""
    anchor = key_folder_anchor(site)
    if anchor is None:
        return
    seq, head_hash = ledger.head()
    if seq >= anchor.seq and ledger.hash_at(anchor.seq) == anchor.head_hash:
        return
    raise LedgerBehind(behind_message(site, (seq, head_hash), anchor, forked=seq >= anchor.seq), site_id=site.site_id)


def local_anchors_without_ledger(site: SiteConfig) -> list[Anchor]:
    """Heads recorded for a ledger that is gone (the file deleted)."""
    from federation.site.audit import audit_path

    anchors = audit_anchors(audit_path(site.state_dir))
    for found in (cache_anchor(site.analytics_cache_dir), key_folder_anchor(site)):
        if found is not None:
            anchors.append(found)
    return [a for a in sorted(anchors, key=lambda a: -a.seq) if a.seq > 1]


def behind_message(
    site: SiteConfig, head: tuple[int, str], anchor: Anchor, *, forked: bool = False, missing: bool = False
) -> str:
    if missing:
        state = f"there is no ledger at {site.ledger_path}"
    elif forked:
        state = (
            f"the ledger {site.ledger_path} holds another entry at seq {anchor.seq} (its head is seq {head[0]}, "
            f"{head[1][:12]}...): its history was rewritten"
        )
    else:
        state = (
            f"the ledger {site.ledger_path} ends at seq {head[0]} ({head[1][:12]}...): entries after it were removed, "
            "or an older copy was put in place"
        )
    return (
        f"Refused to serve: a ledger is never behind a head this node already recorded, but {anchor.describe()}, "
        f"and {state}. Nothing is served until the ledger holds that head. What to do: stop here, keep the ledger, "
        "the audit log and the state folder as they are (they are the evidence), and tell the ethics board and the "
        "site's security officer. The ledger that was replaced, or a backup taken at or beyond that head "
        f"(seq {anchor.seq}), is the only one the node accepts; an older copy would erase recorded spending."
    )


class _read_only:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> sqlite3.Connection:
        self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
