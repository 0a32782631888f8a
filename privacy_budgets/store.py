"""The ledger's SQLite file: schema, connections, transactions, and derived-state tables.

One file per site, in WAL mode so readers never block the writer. Writers serialise
with ``BEGIN IMMEDIATE`` (the write lock is taken before anything is read, so a check
and the entry it allows see the same state) and wait on a busy timeout.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "site.ledger"
>>> conn = connect(path)
>>> with write_transaction(conn):
...     create_schema(conn, site_id="hospital_01", public_key="00" * 32)
>>> read_meta(conn)["site_id"]
'hospital_01'
>>> head(conn)
(0, '0000000000000000000000000000000000000000000000000000000000000000')
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privacy_budgets.entries import ENTRY_FIELDS, GENESIS_PREV, LEDGER_FORMAT, LedgerEntry
from privacy_budgets.errors import environment_problem
from privacy_budgets.state import Changes, Limit, ReservationRow, State

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, site_id TEXT NOT NULL,
    dataset TEXT, project TEXT, actor TEXT NOT NULL, purpose TEXT NOT NULL,
    run_id TEXT, round INTEGER, query_id TEXT, mechanism TEXT, reservation_id TEXT,
    epsilon REAL, delta REAL, epsilon_after REAL, project_epsilon_after REAL,
    details_json TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL,
    signature TEXT NOT NULL
) STRICT;
CREATE INDEX entries_by_scope ON entries (dataset, project, kind);
-- Derived state: rebuilt and compared by verification, never trusted alone.
CREATE TABLE limits (
    dataset TEXT NOT NULL, project TEXT NOT NULL, epsilon REAL NOT NULL, delta REAL,
    seq INTEGER NOT NULL, actor TEXT NOT NULL, time TEXT NOT NULL,
    PRIMARY KEY (dataset, project)
) STRICT;
CREATE TABLE reservations (
    id TEXT PRIMARY KEY, dataset TEXT NOT NULL, project TEXT NOT NULL,
    mechanism TEXT NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL, resolved_seq INTEGER
) STRICT;
CREATE INDEX reservations_by_status ON reservations (status, dataset);
-- last_seq: the entry that last changed the row. It orders composition only (see multiset).
CREATE TABLE counts (
    dataset TEXT NOT NULL, project TEXT NOT NULL, state TEXT NOT NULL,
    mechanism TEXT NOT NULL, count INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dataset, project, state, mechanism)
) STRICT;
"""


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, full sync."""
    if read_only:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
    else:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        _set_wal(conn)
        # FULL: a committed entry survives a power cut, not only a crashed process.
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching a new file to WAL needs an exclusive lock; when processes create the same
    # ledger at once SQLite reports "locked" at once rather than waiting (deadlock
    # avoidance), so wait here as the busy timeout would.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; any exception rolls the whole entry back.

    A write the machine refuses (permissions, a full disk) is a LedgerUnavailable that
    says so, never mistaken for damage."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.OperationalError as err:
        unavailable = environment_problem(err, path=database_path(conn))
        if unavailable is None:
            raise
        raise unavailable from None


def database_path(conn: sqlite3.Connection) -> str:
    """The file of ``conn``'s main database."""
    try:
        return str(conn.execute("PRAGMA database_list").fetchone()[2])
    except sqlite3.Error:
        return "(the ledger)"


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One consistent snapshot for several reads."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def create_schema(conn: sqlite3.Connection, *, site_id: str, public_key: str) -> None:
    """Tables and the meta rows of a new ledger (inside the caller's transaction)."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("format", LEDGER_FORMAT), ("site_id", site_id), ("public_key", public_key)],
    )


def table_names(conn: sqlite3.Connection) -> set[str]:
    """Names of the tables in the file."""
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def has_schema(conn: sqlite3.Connection) -> bool:
    """Whether the file already holds a ledger's tables."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    return row is not None


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    """The meta rows: format, site_id, public_key."""
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, entry_hash) of the newest entry, or (0, the genesis predecessor)."""
    row = conn.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS_PREV) if row is None else (row[0], row[1])


_INSERT = f"INSERT INTO entries ({', '.join(ENTRY_FIELDS)}) VALUES ({', '.join('?' for _ in ENTRY_FIELDS)})"


def insert_entry(conn: sqlite3.Connection, entry: LedgerEntry) -> None:
    """Append ``entry`` (inside the caller's transaction, with its ``apply_changes``)."""
    conn.execute(_INSERT, tuple(getattr(entry, name) for name in ENTRY_FIELDS))


def apply_changes(conn: sqlite3.Connection, changes: Changes) -> None:
    """Apply one entry's derived-state changes to the tables (caller's transaction)."""
    for limit in changes.limits:
        conn.execute(
            "INSERT OR REPLACE INTO limits VALUES (?, ?, ?, ?, ?, ?, ?)",
            (limit.dataset, limit.project, limit.epsilon, limit.delta, limit.seq, limit.actor, limit.time),
        )
    for row in changes.reservations:
        conn.execute(
            "INSERT OR REPLACE INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.id, row.dataset, row.project, row.mechanism, row.seq, row.status, row.resolved_seq),
        )
    for dataset, project, state, mechanism, n in changes.counts:
        conn.execute(
            "INSERT INTO counts (dataset, project, state, mechanism, count, last_seq) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (dataset, project, state, mechanism) "
            "DO UPDATE SET count = count + excluded.count, last_seq = excluded.last_seq",
            (dataset, project, state, mechanism, n, changes.seq),
        )
    if changes.counts:
        conn.execute("DELETE FROM counts WHERE count = 0")


def iter_entries(
    conn: sqlite3.Connection, *, dataset: str | None = None, query_id: str | None = None, run_id: str | None = None
) -> Iterator[LedgerEntry]:
    """Entries in seq order (all, or those of one dataset, release identity or run):
    filtered by SQLite, so a site's check per request does not decode its whole history."""
    scope = (("dataset", dataset), ("query_id", query_id), ("run_id", run_id))
    where = [(name, value) for name, value in scope if value is not None]
    sql = f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries"
    if where:
        sql += " WHERE " + " AND ".join(f"{name} = ?" for name, _ in where)
    for row in conn.execute(sql + " ORDER BY seq", tuple(value for _, value in where)):
        yield LedgerEntry(*row)


def governed_entries(conn: sqlite3.Connection, *, kinds: tuple[str, ...]) -> Iterator[LedgerEntry]:
    """The genesis entry and every entry of ``kinds``, in seq order (a full scan: only
    decisions, which are rare, read this)."""
    marks = ", ".join("?" for _ in kinds)
    sql = f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries WHERE seq = 1 OR kind IN ({marks}) ORDER BY seq"
    for row in conn.execute(sql, kinds):
        yield LedgerEntry(*row)


def newest_entry(conn: sqlite3.Connection) -> LedgerEntry | None:
    """The entry with the highest seq, if any."""
    row = conn.execute(f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else LedgerEntry(*row)


def entry_at(conn: sqlite3.Connection, seq: int) -> LedgerEntry | None:
    """The entry at ``seq``, if any."""
    row = conn.execute(f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries WHERE seq = ?", (seq,)).fetchone()
    return None if row is None else LedgerEntry(*row)


def limits_of(conn: sqlite3.Connection, *, dataset: str) -> dict[str, Limit]:
    """project -> Limit for a dataset; the dataset's cap is under ``""``."""
    rows = conn.execute(
        "SELECT dataset, project, epsilon, delta, seq, actor, time FROM limits WHERE dataset = ?",
        (dataset,),
    )
    return {row[1]: Limit(*row) for row in rows}


def reservation_row(conn: sqlite3.Connection, reservation_id: str) -> ReservationRow | None:
    """The reservation with this id, in whatever status."""
    row = conn.execute(
        "SELECT id, dataset, project, mechanism, seq, status, resolved_seq FROM reservations WHERE id = ?",
        (reservation_id,),
    ).fetchone()
    return None if row is None else ReservationRow(*row)


def open_reservation_rows(conn: sqlite3.Connection) -> list[ReservationRow]:
    """Every reservation neither committed nor aborted, oldest first."""
    rows = conn.execute(
        "SELECT id, dataset, project, mechanism, seq, status, resolved_seq FROM reservations "
        "WHERE status = 'open' ORDER BY seq"
    )
    return [ReservationRow(*row) for row in rows]


def multiset(
    conn: sqlite3.Connection,
    *,
    dataset: str,
    project: str | None = None,
    include_reserved: bool = True,
) -> Counter:
    """Base mechanism -> count composed so far for a dataset (or one project)."""
    sql = "SELECT mechanism, SUM(count) FROM counts WHERE dataset = ?"
    args: list = [dataset]
    if project is not None:
        sql += " AND project = ?"
        args.append(project)
    if not include_reserved:
        sql += " AND state = 'committed'"
    # Each mechanism where it last appeared (composition.py: the kept prefixes stay reusable,
    # and a study reusing an old calibration moves it to the end once, not at every round).
    try:
        rows = conn.execute(sql + " GROUP BY mechanism ORDER BY MAX(last_seq), MIN(rowid)", args).fetchall()
    except sqlite3.OperationalError:
        if has_last_seq(conn):
            raise
        # a ledger written before last_seq, opened read-only: first-appearance order
        rows = conn.execute(sql + " GROUP BY mechanism ORDER BY MIN(rowid)", args).fetchall()
    return Counter({text: n for text, n in rows if n})


def has_last_seq(conn: sqlite3.Connection) -> bool:
    """Whether the counts table records where each mechanism last appeared (see ``upgrade``)."""
    return any(row[1] == "last_seq" for row in conn.execute("PRAGMA table_info(counts)"))


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring an older ledger's tables up to this schema (inside the caller's write transaction).

    Adds ``counts.last_seq`` (0 for the rows already there, which keep their first-appearance
    order before anything touched since). Entries are never rewritten.
    """
    if not has_last_seq(conn):
        conn.execute("ALTER TABLE counts ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0")


def has_reserves(conn: sqlite3.Connection, *, dataset: str) -> bool:
    """Whether any release was ever reserved on the dataset."""
    row = conn.execute("SELECT 1 FROM entries WHERE dataset = ? AND kind = 'reserve' LIMIT 1", (dataset,)).fetchone()
    return row is not None


def read_derived(conn: sqlite3.Connection) -> State:
    """The derived tables as a State, for comparison with a replay of the entries."""
    state = State()
    for row in conn.execute("SELECT dataset, project, epsilon, delta, seq, actor, time FROM limits"):
        state.limits[(row[0], row[1])] = Limit(*row)
    for row in conn.execute("SELECT id, dataset, project, mechanism, seq, status, resolved_seq FROM reservations"):
        state.reservations[row[0]] = ReservationRow(*row)
    for dataset, project, st, text, n in conn.execute(
        "SELECT dataset, project, state, mechanism, count FROM counts ORDER BY rowid"
    ):
        state.counts[(dataset, project, st, text)] = n
    return state


def public_keys(conn: sqlite3.Connection) -> list[str]:
    """Every key the ledger was signed with, oldest first: the genesis key, then each
    rotated-in key (hex). Read as recorded: verification checks them."""
    import json

    keys = []
    for kind, text in conn.execute(
        "SELECT kind, details_json FROM entries WHERE seq = 1 OR kind = 'rotate_key' ORDER BY seq"
    ):
        try:
            details = json.loads(text)
        except ValueError:
            continue
        key = details.get("public_key") if kind == "genesis" else details.get("new_public_key")
        if isinstance(key, str):
            keys.append(key)
    return keys
