"""``node status``: paused or not, what the site serves, its ledger per project, and
the latest lines of its audit log; read-only (the ledger is opened without its key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from federation.site.audit import audit_path, recent_entries, verify_audit
from federation.site.config import NodeConfig
from federation.site.node_runtime import NodeRuntime
from federation.site.pause import PauseState, read_pause

_LEDGER_COLUMNS = ["dataset", "project", "limit_kind", "limit", "spent", "remaining"]


@dataclass(frozen=True)
class NodeStatus:
    config: NodeConfig
    pause: PauseState | None
    ledger: pd.DataFrame  # one row per dataset cap and per project allocation
    recent: pd.DataFrame  # the latest audit lines, newest last
    audit_summary: str
    runtime: NodeRuntime | None = None  # the node's processes (None: not looked at)

    def to_text(self) -> str:
        c = self.config
        lines = [
            f"site {c.site_id}, dataset {c.dataset} ({c.data_path})",
            f"state: {c.state_dir}",
            f"coordinator: {c.coordinator_address}",
            f"node: {self.runtime.describe()}" if self.runtime is not None else "node: not looked at",
            "PAUSED: " + self.pause.describe() if self.pause else "not paused (the kill switch is off)",
            f"policy: serves {', '.join(c.policy.allowed_tasks)}; min cell size {c.policy.min_cell_size}"
            + (
                f"; at most epsilon {c.policy.max_epsilon_per_request:g} per request"
                if c.policy.max_epsilon_per_request is not None
                else ""
            ),
            "",
            "ledger:",
            self.ledger.to_string(index=False) if not self.ledger.empty else "  no ledger yet (every task is refused)",
            "",
            f"audit log: {self.audit_summary}",
            self.recent.to_string(index=False) if not self.recent.empty else "  no requests yet",
        ]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "site_id": self.config.site_id,
            "dataset": self.config.dataset,
            "node": None
            if self.runtime is None
            else {
                "state": self.runtime.state,
                "detail": self.runtime.detail,
                "supervisor_pid": self.runtime.supervisor,
                "supernode_pid": self.runtime.supernode,
                "executor_pid": self.runtime.executor,
            },
            "paused": None if self.pause is None else vars(self.pause),
            "allowed_tasks": list(self.config.policy.allowed_tasks),
            "ledger": self.ledger.to_dict(orient="records"),
            "audit": self.audit_summary,
            "recent": self.recent.to_dict(orient="records"),
        }


def node_status(*, config: NodeConfig, last: int = 5) -> NodeStatus:
    """The node's state as `node status` shows it: its processes (running, connected,
    crashed or stopped, from /proc), the kill switch, the ledger and the audit log."""
    from federation.site.supernode import runtime_of

    path = audit_path(config.state_dir)
    recent = list(reversed(recent_entries(path=path, limit=last))) if last > 0 else []
    return NodeStatus(
        config=config,
        pause=read_pause(state_dir=config.state_dir),
        ledger=_ledger_frame(config),
        recent=audit_frame(recent),
        audit_summary=verify_audit(path).describe() if path.exists() else f"{path}: no requests yet",
        runtime=runtime_of(config),
    )


def _ledger_frame(config: NodeConfig) -> pd.DataFrame:
    from privacy_budgets.exports import read_only
    from privacy_budgets.views import status_frame

    path = config.site_config().ledger_path
    if not path.exists():
        return pd.DataFrame(columns=_LEDGER_COLUMNS)
    with read_only(path) as conn:
        frame = status_frame(conn)
    return frame[[c for c in _LEDGER_COLUMNS if c in frame.columns]]


def audit_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Audit lines as a table: one row each, the decision and the epsilon charged."""
    rows = []
    for e in entries:
        decision = e.get("decision") or {}
        detail = decision.get("reason") or e.get("message") or e.get("reason") or e.get("note") or e.get("error") or ""
        rows.append(
            {
                "seq": e.get("seq"),
                "time": str(e.get("time", ""))[:19],
                "kind": e.get("kind") if e.get("kind") != "alert" else f"alert:{e.get('alert')}",
                "task": e.get("task", ""),
                "project": e.get("project") or "",
                "outcome": decision.get("outcome", ""),
                "epsilon": e.get("epsilon_charged", ""),
                "detail": _short(str(detail)),
            }
        )
    return pd.DataFrame(rows, columns=["seq", "time", "kind", "task", "project", "outcome", "epsilon", "detail"])


def _short(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
