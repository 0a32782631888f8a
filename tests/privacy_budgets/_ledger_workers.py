"""Code run in other processes by the concurrency and crash tests (importable by name)."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from pathlib import Path

from privacy_budgets import BudgetExceeded, Ledger
from privacy_budgets.mechanisms import gaussian_event

CHEAP = dict(noise_multiplier=30.0)


def spend_until_refused(path: str, worker: int, attempts: int) -> tuple[int, int]:
    """Reserve and commit ``attempts`` cheap counts; return (committed, refused)."""
    committed = refused = 0
    with Ledger.open(path, site_id="site_a", create=False) as ledger:
        for i in range(attempts):
            try:
                r = ledger.reserve(
                    dataset="hospital_01",
                    project="quickstart",
                    event=gaussian_event(**CHEAP),
                    actor=f"worker-{worker}",
                    purpose=f"count w{worker} #{i}",
                )
            except BudgetExceeded:
                refused += 1
                continue
            ledger.commit(r)
            committed += 1
    return committed, refused


def create_at_once(path: str, worker: int) -> str:
    """Open (creating if need be) the same new ledger as other processes, and write once."""
    with Ledger.open(path, site_id="site_a") as ledger:
        ledger.record_uncovered(
            dataset="hospital_01",
            project="quickstart",
            actor=f"w{worker}",
            purpose="startup",
            what=f"process {worker} started",
        )
        return ledger.public_key_fingerprint


def die_inside_transaction(path: str) -> None:
    """Commit one spend, leave one reservation open, then die mid-transaction (SIGKILL)."""
    with Ledger.open(path, site_id="site_a", create=False) as ledger:
        ledger.commit(
            ledger.reserve(
                dataset="hospital_01",
                project="quickstart",
                event=gaussian_event(**CHEAP),
                actor="node",
                purpose="committed before the crash",
            )
        )
        ledger.reserve(
            dataset="hospital_01",
            project="quickstart",
            event=gaussian_event(**CHEAP),
            actor="node",
            purpose="left open by the crash",
        )
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO entries (seq, time, kind, site_id, actor, purpose, details_json, "
        "prev_hash, entry_hash, signature) VALUES (999, 't', 'uncovered', 'site_a', "
        "'x', 'half-written', '{}', '', '', '')"
    )
    conn.execute("UPDATE counts SET count = count + 1000")
    os.kill(os.getpid(), signal.SIGKILL)


def spend_forever(path: str) -> None:
    """Reserve and commit until killed (for the kill-while-looping test)."""
    with Ledger.open(path, site_id="site_a", create=False) as ledger:
        i = 0
        while True:
            r = ledger.reserve(
                dataset="hospital_01",
                project="quickstart",
                event=gaussian_event(noise_multiplier=500.0),
                actor="loop",
                purpose=f"loop #{i}",
            )
            ledger.commit(r)
            i += 1


if __name__ == "__main__":
    action, path = sys.argv[1], sys.argv[2]
    {"die_inside_transaction": die_inside_transaction, "spend_forever": spend_forever}[action](str(Path(path)))
