"""A record of processing activities (GDPR art. 30) per dataset, from what the records prove.

The ledger proves, for each dataset: the projects, their purposes, the researchers
approved and who signed each approval, the cap and allocations and who decided them,
and what was released (by kind, how many, the epsilon spent, when). The site's audit
log proves the requests each project made and how many were served or refused. What
no record can know (the controller, the data protection officer, the categories of
data subjects and of personal data, the retention period) comes from node.toml's
``[processing]`` keys, and is marked as stated by the site rather than proven; a key
left unset is listed as missing, never filled with a guess.

Written as JSON (for the register) and as one HTML page an ethics board can file.
"""

from __future__ import annotations

import html
import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from privacy_budgets.authority import Governance
from privacy_budgets.entries import LedgerEntry
from privacy_budgets.records import utc_now

# node.toml [processing] key -> what the record calls it (federation/site/node_keys.py declares them).
STATED = {
    "controller": "controller (name and contact)",
    "dpo": "data protection officer (contact)",
    "data_subjects": "categories of data subjects",
    "data_categories": "categories of personal data",
    "retention": "time limits for erasure (retention)",
}


def stated_by_site(node_toml: Path | None) -> dict[str, str | None]:
    """The [processing] keys of a node.toml (None for each key not set)."""
    found: dict[str, Any] = {}
    if node_toml is not None:
        with Path(node_toml).open("rb") as handle:
            found = tomllib.load(handle).get("processing", {})
    return {key: (str(found[key]) if found.get(key) else None) for key in STATED}


def audit_path_of(node_toml: Path) -> Path | None:
    """The audit log of the node a node.toml describes (``[state] dir``/audit.jsonl)."""
    with Path(node_toml).open("rb") as handle:
        state = tomllib.load(handle).get("state", {}).get("dir")
    if not state:
        return None
    return (Path(node_toml).parent / Path(state).expanduser()).resolve() / "audit.jsonl"


def processing_record(
    entries: list[LedgerEntry],
    *,
    verified: str,
    stated: dict[str, str | None],
    audit_log: Path | None = None,
) -> dict[str, Any]:
    """The record as a dict (see the module docstring); ``verified`` is the ledger's verdict."""
    governance = Governance.replay(entries)
    requests = _requests(audit_log)
    site = entries[0].site_id if entries else "?"
    datasets = sorted({e.dataset for e in entries if e.dataset})
    return {
        "record": "GDPR art. 30 record of processing activities",
        "site": site,
        "generated": utc_now(),
        "ledger": {"verification": verified, "entries": len(entries), "ledger_id": governance.ledger_id},
        "audit_log": None if audit_log is None else str(audit_log),
        "stated_by_site": stated,
        "missing": [STATED[k] for k, v in stated.items() if v is None],
        "datasets": [_dataset(d, entries, governance, requests) for d in datasets],
    }


def _dataset(dataset: str, entries: list[LedgerEntry], governance: Governance, requests) -> dict[str, Any]:
    mine = [e for e in entries if e.dataset == dataset]
    caps = [e for e in mine if e.kind == "set_cap"]
    projects = sorted({e.project for e in mine if e.project})
    return {
        "dataset": dataset,
        "cap": None if not caps else {"epsilon": caps[-1].details.get("epsilon"), "delta": caps[-1].delta},
        "cap_decisions": [_decision(e) for e in caps],
        "activities": [_activity(dataset, p, mine, governance, requests.get(p, {})) for p in projects],
    }


def _activity(dataset, project, entries, governance, asked) -> dict[str, Any]:
    from privacy_budgets.statements import release_kind

    mine = [e for e in entries if e.project == project]
    commits = [e for e in mine if e.kind == "commit"]
    approval = governance.approvals.get((dataset, project))
    allocations = [e for e in mine if e.kind == "allocate"]
    return {
        "project": project,
        "purpose": None if approval is None else approval.purpose,
        "researchers": [] if approval is None else [r.get("name") for r in approval.researchers],
        "approvals": [_decision(e) for e in mine if e.kind == "approve"],
        "allocations": [_decision(e) for e in allocations],
        "allocation": None if not allocations else allocations[-1].details.get("epsilon"),
        "epsilon_spent": None if not commits else commits[-1].project_epsilon_after,
        "releases": dict(sorted(Counter(release_kind(e) for e in commits).items())),
        "releases_without_guarantee": sum(e.kind == "uncovered" for e in mine),
        "first_release": commits[0].time if commits else None,
        "last_release": commits[-1].time if commits else None,
        "requests": asked,
    }


def _decision(e: LedgerEntry) -> dict[str, Any]:
    authority = e.details.get("authority")
    signers = [s.get("name") for s in authority.get("signed_by") or []] if isinstance(authority, dict) else [e.actor]
    return {"seq": e.seq, "time": e.time, "signed_by": signers, "by_quorum": isinstance(authority, dict)}


def _requests(audit_log: Path | None) -> dict[str, dict[str, int]]:
    """project -> {"served": n, "refused": n} from the audit log's request lines."""
    out: dict[str, Counter] = {}
    if audit_log is None or not Path(audit_log).exists():
        return {}
    for line in Path(audit_log).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") != "request" or not record.get("project"):
            continue
        outcome = (record.get("decision") or {}).get("outcome") or "unknown"
        out.setdefault(str(record["project"]), Counter())[outcome] += 1
    return {project: dict(counts) for project, counts in out.items()}


# --- HTML -------------------------------------------------------------------------------------


def record_html(record: dict[str, Any]) -> str:
    """One self-contained page of the record."""
    e = html.escape
    stated = "".join(
        f"<tr><th>{e(STATED[k])}</th><td>{e(v) if v else '<b>not stated</b>: set [processing] ' + k + ' in node.toml'}"
        "</td><td>stated by the site (node.toml)</td></tr>"
        for k, v in record["stated_by_site"].items()
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Record of processing (GDPR art. 30): {e(record['site'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 12px}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:4px 8px;"
        "text-align:left;vertical-align:top}th{background:#f6f8fa}</style></head><body>",
        f"<h1>Record of processing activities (GDPR art. 30): site {e(record['site'])}</h1>",
        f"<p>Generated {e(record['generated'])} from the privacy budget ledger ({e(record['ledger']['verification'])}) "
        f"and the audit log {e(str(record['audit_log'] or '(not given)'))}. Activities below are proven by those "
        "records; the rows marked <i>stated by the site</i> are not.</p>",
        f"<table>{stated}</table>",
    ]
    for d in record["datasets"]:
        cap = d["cap"] or {}
        parts.append(
            f"<h2>Dataset {e(d['dataset'])}</h2><p>Lifetime cap epsilon {e(str(cap.get('epsilon')))} at delta "
            f"{e(str(cap.get('delta')))}; decided by {e(_signers(d['cap_decisions']))}.</p>"
        )
        rows = "".join(
            "<tr>"
            f"<td>{e(a['project'])}</td><td>{e(a['purpose'] or 'no approval recorded')}</td>"
            f"<td>{e(', '.join(a['researchers']) or '-')}</td>"
            f"<td>{e(_signers(a['approvals']) or '-')}</td>"
            f"<td>{e(str(a['allocation']))} ({e(_signers(a['allocations']))})</td>"
            f"<td>{e(_fmt(a['epsilon_spent']))}</td>"
            f"<td>{e(', '.join(f'{k}: {n}' for k, n in a['releases'].items()) or 'none')}"
            f"{'; ' + str(a['releases_without_guarantee']) + ' without a DP guarantee' if a['releases_without_guarantee'] else ''}</td>"
            f"<td>{e(_period(a))}</td>"
            f"<td>{e(', '.join(f'{k} {n}' for k, n in a['requests'].items()) or '-')}</td>"
            "</tr>"
            for a in d["activities"]
        )
        parts.append(
            "<table><tr><th>project</th><th>purpose</th><th>researchers</th><th>approved by</th>"
            "<th>allocation (decided by)</th><th>epsilon spent</th><th>released</th><th>period</th>"
            f"<th>requests (audit log)</th></tr>{rows}</table>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _signers(decisions: list[dict[str, Any]]) -> str:
    return "; ".join(f"seq {d['seq']}: {', '.join(map(str, d['signed_by']))}" for d in decisions)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _period(a: dict[str, Any]) -> str:
    if not a["first_release"]:
        return "no release yet"
    return f"{a['first_release'][:10]} to {a['last_release'][:10]}"


def write_record(record: dict[str, Any], *, out: Path) -> tuple[Path, Path]:
    """Write ``out`` (HTML) and the same name with .json; return both paths."""
    out = Path(out)
    out.write_text(record_html(record), encoding="utf-8")
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out, json_path
