"""Ledger exports (JSON) and read-only verification of a file, without the private key.

An export holds the site id, the public key and every entry; the ethics board or the
coordinator verifies it exactly as it would the SQLite file (minus the derived tables,
which an export does not carry).

>>> import tempfile, pathlib
>>> from privacy_budgets.ledger import Ledger
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with Ledger.open(folder / "site.ledger", site_id="site") as ledger:
...     _ = ledger.export(out=folder / "export.json")
>>> verify_path(folder / "export.json").ok, verify_path(folder / "site.ledger").ok
(True, True)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from privacy_budgets import store
from privacy_budgets.entries import LEDGER_FORMAT, LedgerEntry
from privacy_budgets.errors import LedgerError, environment_problem
from privacy_budgets.keys import fingerprint
from privacy_budgets.receipts import SpendReceipt
from privacy_budgets.verification import VerificationReport, verify_entries

EXPORT_FORMAT = "privacy_budgets.export/1"


def export_dict(*, site_id: str, public_key: str, entries: list[LedgerEntry]) -> dict[str, Any]:
    """The export of a ledger as a plain dict."""
    return {
        "format": EXPORT_FORMAT,
        "ledger_format": LEDGER_FORMAT,
        "site_id": site_id,
        "public_key": public_key,
        "fingerprint": fingerprint(public_key),
        "entries": [entry.to_dict() for entry in entries],
    }


def load_export(source: dict[str, Any] | Path | str) -> dict[str, Any]:
    """An export from a dict or a JSON file, with its shape checked."""
    if isinstance(source, dict):
        data = source
    else:
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise LedgerError(
                f"A ledger export must be a JSON file written by Ledger.export; cannot read "
                f"{source} ({err}). Check the path."
            ) from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise LedgerError(
            f"A ledger export must carry format {EXPORT_FORMAT!r}; got "
            f"{str(data)[:80]!r}. Write it with Ledger.export(out=...)."
        )
    return data


def export_entries(data: dict[str, Any]) -> list[LedgerEntry]:
    """The entries of an export."""
    return [LedgerEntry.from_dict(item) for item in data["entries"]]


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only snapshot of a ledger file; needs no key and writes nothing."""
    if not is_sqlite(path):
        raise LedgerError(
            f"A ledger file must be a privacy_budgets SQLite ledger; {path} is not an SQLite "
            "file. Check the path (an export is read with load_export)."
        )
    try:
        conn = store.connect(path, read_only=True)
        try:
            with store.read_transaction(conn):
                if not store.has_schema(conn):
                    raise LedgerError(
                        f"A ledger file must hold the ledger's tables; {path} is an SQLite "
                        "database without them. Check the path."
                    )
                yield conn
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        unavailable = environment_problem(err, path=path)
        if unavailable is not None:
            raise unavailable from None
        raise LedgerError(
            f"A ledger file must be a readable SQLite ledger; {path} is not ({err}). "
            "Check the path, or verify the site's export instead; never replace a ledger with an older copy "
            "(that would erase recorded spending)."
        ) from None


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` starts like an SQLite database (else it may be an export)."""
    try:
        with Path(path).open("rb") as handle:
            return handle.read(16) == store.SQLITE_MAGIC
    except OSError as err:
        raise LedgerError(f"Cannot read {path} ({err}). Check the path.") from None


def read_entries(path: Path) -> list[LedgerEntry]:
    """The entries of a ledger file or an export, read-only."""
    if not is_sqlite(path):
        return export_entries(load_export(path))
    with read_only(path) as conn:
        return list(store.iter_entries(conn))


def verify_path(
    path: Path,
    *,
    public_key: str | None = None,
    checkpoint: Path | str | dict | None = None,
    receipts: Iterable[SpendReceipt | dict] = (),
    deep: bool = False,
) -> VerificationReport:
    """Verify a ledger file (SQLite, opened read-only) or an export (JSON)."""
    if not is_sqlite(path):
        entries = export_entries(load_export(path))
        return verify_entries(entries, checkpoint=checkpoint, receipts=receipts, public_key=public_key, deep=deep)
    with read_only(path) as conn:
        return verify_entries(
            store.iter_entries(conn),
            derived=store.read_derived(conn),
            checkpoint=checkpoint,
            receipts=receipts,
            public_key=public_key,
            deep=deep,
        )
