"""The coordinator's mirror of the sites' ledger and audit heads, kept across runs.

Every reply that carries receipts brings the ledger's head with each receipt and the
site's newest signed audit head (federation/site/audit_heads.py). The mirror keeps them
all, in arrival order, in ``heads.jsonl`` beside the run folders, and flags at once a
ledger head that goes backwards or forks, and an audit head that forks or goes back
(``privacy_budgets/head_chain.py``): a site whose ledger was rolled back, or whose
history or audit log was rewritten and signed again with the site's own key, shows here,
outside the site, even when everything at the site agrees with itself. A flag is
journalled with the run (``event: ledger_head_alert``) and logged; ``workbench budget
reconcile`` finds the same from the receipts.

The mirror's copies are evidence, not authority: a relay that edits them can hide a
rollback from itself, never make a site's signed heads disagree.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from privacy_budgets.head_chain import audit_head_problems, head_problems

HEADS_FILE = "heads.jsonl"
log = logging.getLogger(__name__)


class HeadMirror:
    """The heads of every site, as replies brought them (one JSON line per reply)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut off by a crash
                continue
        return out

    def problems(self, lines: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Every fork and backwards step among the heads held."""
        lines = self.lines() if lines is None else lines
        receipts = [r for line in lines for r in line.get("receipts", [])]
        audit_heads = [line["audit_head"] for line in lines if line.get("audit_head")]
        return head_problems(receipts) + audit_head_problems(audit_heads)

    def observe(
        self, *, site: str, receipts: list[dict[str, Any]], audit_head: dict[str, Any] | None, run: str = ""
    ) -> list[dict[str, Any]]:
        """Keep one reply's heads; return the problems they add (empty: the chains hold)."""
        if not receipts and not audit_head:
            return []
        before = self.lines()
        line = {"site": site, "run": run, "receipts": receipts, "audit_head": audit_head}
        seen = {_key(p) for p in self.problems(before)}
        added = [p for p in self.problems([*before, line]) if _key(p) not in seen]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        for problem in added:
            log.warning("ledger head alert for site %s: %s", problem["site"], problem["detail"])
        return added


def _key(problem: dict[str, Any]) -> tuple:
    return (problem["problem"], problem["site"], problem["seq"], problem["detail"])
