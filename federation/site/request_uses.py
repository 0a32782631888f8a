"""What a site has served under each signed request: its replay memory.

One SQLite file in the site's state folder (``signed_requests.sqlite``). Each row is one
use of one signed request (its id: the sha256 of the signed bytes, which hold the
nonce) for one step: ``train:2``, ``evaluate:2``, ``ranges``, ``query:count:<hash>``.
A use is recorded before any work (the gate), in one transaction with the check, so
two messages racing for the same step cannot both pass. A row is kept until its
request has expired (plus the clock tolerance), after which the request is refused
for its expiry anyway.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from federation.errors import PolicyRefused

FILE = "signed_requests.sqlite"
KEEP_AFTER_EXPIRY = timedelta(days=1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uses (
    request TEXT NOT NULL,
    step TEXT NOT NULL,
    family TEXT NOT NULL,
    researcher TEXT NOT NULL,
    expires TEXT NOT NULL,
    time TEXT NOT NULL,
    PRIMARY KEY (request, step)
)
"""


class StepUsed(PolicyRefused):
    """This step was already served under this signed request (authorization.py words the refusal)."""


class StepsExhausted(PolicyRefused):
    """The signed request allows no more steps of this family (its rounds are used)."""

    def __init__(self, used: int) -> None:
        super().__init__(f"{used} step(s) used")
        self.used = used


def record_use(
    *,
    state_dir: Path,
    request: str,
    step: str,
    family: str,
    allowed: int,
    researcher: str,
    expires: datetime,
    now: datetime | None = None,
) -> None:
    """Record ``step`` under ``request``; raises StepUsed for a repeat and StepsExhausted
    when ``allowed`` steps of ``family`` (e.g. "train") were already served under it."""
    now = now or datetime.now(UTC)
    path = Path(state_dir) / FILE
    with closing(sqlite3.connect(path, timeout=30.0, isolation_level=None)) as conn:
        conn.execute(_SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM uses WHERE expires < ?", ((now - KEEP_AFTER_EXPIRY).isoformat(),))
            seen = conn.execute("SELECT 1 FROM uses WHERE request = ? AND step = ?", (request, step)).fetchone()
            if seen is not None:
                raise StepUsed(step)
            used = conn.execute(
                "SELECT COUNT(*) FROM uses WHERE request = ? AND family = ?", (request, family)
            ).fetchone()[0]
            if used >= allowed:
                raise StepsExhausted(int(used))
            conn.execute(
                "INSERT INTO uses VALUES (?, ?, ?, ?, ?, ?)",
                (request, step, family, researcher, expires.isoformat(), now.isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
