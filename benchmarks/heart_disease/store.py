"""Each run's rows kept as JSON, so runs of part of the grid add up to one report.

A run writes ``run-<UTC time>.json`` into the store folder: its command, machine,
seconds, every row (per-seed accuracies and AUCs, per-centre means, the epsilons
read from the ledgers, the chosen configurations) and the charged search's split per
epsilon. ``benchmarks.heart_disease.merge`` regenerates one table from every stored
run; nothing in a stored file is recomputed or edited afterwards.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.heart_disease.report import Row
from benchmarks.machine import machine_lines

DEFAULT_STORE = Path(__file__).parent / "stored_runs"


def row_record(row: Row) -> dict:
    """One row as plain JSON: the per-seed figures, not only their summary."""
    return {
        "name": row.name,
        "method": row.method,
        "path": row.path,
        "family": row.family or ("nonprivate" if row.path == "in-process" else "baseline"),
        "target_epsilon": row.target_epsilon,
        "accuracy": list(row.accuracy),
        "auc": list(row.auc),
        "per_centre": dict(row.per_centre),
        "spent": list(row.spent),
        "chosen": list(row.chosen) if row.chosen else ([row.choice.hp.label()] if row.choice else []),
        "choice_validation": (
            {"accuracy": row.choice.val_accuracy, "auc": row.choice.val_auc, "tried": row.choice.tried}
            if row.choice
            else None
        ),
    }


def plan_record(plan) -> dict:
    return {
        "candidate_epsilon": float(plan.candidate_epsilon),
        "final_target": float(plan.final_target),
        "planned_total": float(plan.per_site["total_after"].max()),
        "naive_sum": float(plan.per_site["naive_sum"].max()),
    }


def save_run(
    *,
    store: Path,
    rows: list[Row],
    command: str,
    seconds: float,
    plans: dict,
    families: tuple,
    refused: dict[float, str] | None = None,
    two_stage_plans: dict | None = None,
    refused_two_stage: dict[float, str] | None = None,
    shortlist: dict[float, list[str]] | None = None,
) -> Path:
    """Write this run's record into ``store``; return its path."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    record = {
        "command": command,
        "finished_utc": now.strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(float(seconds), 1),
        "families": list(families),
        "machine": machine_lines(),
        "plans": {f"{e:g}": plan_record(p) for e, p in sorted(plans.items())},
        # the charged search's totals whose plan did not fit: refused before anything ran
        "refused": {f"{e:g}": why for e, why in sorted((refused or {}).items())},
        # the two-stage search (d): the synthetic search's shortlist, then every one of it charged
        "two_stage": {
            "plans": {f"{e:g}": plan_record(p) for e, p in sorted((two_stage_plans or {}).items())},
            "refused": {f"{e:g}": why for e, why in sorted((refused_two_stage or {}).items())},
            "shortlist": {f"{e:g}": hps for e, hps in sorted((shortlist or {}).items())},
        },
        "rows": [row_record(r) for r in rows],
    }
    path = store / f"run-{now.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=1, default=_plain) + "\n")
    return path


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot store {type(x).__name__} in a run record")


def load_runs(store: Path) -> list[dict]:
    """Every stored run, oldest first."""
    return [json.loads(p.read_text()) | {"file": p.name} for p in sorted(Path(store).glob("run-*.json"))]
