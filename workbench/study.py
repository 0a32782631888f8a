"""The main job: a private federated study on a folder of per-site files.

Prints each round's metrics and every hospital's epsilon as it is spent, then the
final model beside non-private pooled and local-only baselines, and writes
``summary.json`` and the coordinator's mirror of spend receipts to ``out``.

The hospitals send no metric: each round's AUC and accuracy are estimates from every
hospital's noisy evaluation counts, pooled, with their standard deviation under the
noise. The final table is computed here, from the held-out rows themselves, for the
federated model and the baselines alike: only a simulation can do that (it holds every
hospital's table), and it shows what the model really does.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from federation.coordinator.events import RoundReport
from workbench.baselines import baseline_metrics
from workbench.session import Workbench

Echo = Callable[[str], None]


def _round_line(report: RoundReport) -> str:
    evaluated = {r.site_id: r for r in report.evaluate}
    eps = ", ".join(
        f"{t.site_id} {_project_epsilon(t, evaluated.get(t.site_id)):.3f}"
        if t.status == "ok"
        else f"{t.site_id} {t.status.upper()}"
        for t in report.train
    )
    pooled = report.pooled()
    if pooled:
        metrics = (
            f"AUC {pooled['auc']:.3f} ± {pooled['auc-sd']:.3f}  accuracy {pooled['accuracy']:.3f} ± "
            f"{pooled['accuracy-sd']:.3f} (DP estimates)"
        )
    else:
        metrics = "no evaluation"
    return f"round {report.round}/{report.rounds}  {metrics}  ({report.seconds:.1f} s)  epsilon spent: {eps}"


def _project_epsilon(train, evaluate) -> float:
    """The project's epsilon at the site after the round (its evaluation comes last)."""
    if evaluate is not None and evaluate.status == "ok" and "epsilon-project" in evaluate.info:
        return float(evaluate.info["epsilon-project"])
    return float(train.metrics.get("epsilon-project", float("nan")))


def _weighted(frame: pd.DataFrame, metric: str) -> float:
    ok = frame.dropna(subset=[metric])
    if ok.empty:
        return float("nan")
    return float((ok[metric] * ok["num_examples"]).sum() / ok["num_examples"].sum())


def run_study(
    *,
    data: Path | None,
    out: Path,
    epsilon: float,
    rounds: int,
    target: str | None = None,
    project: str = "study",
    site_cap: float = 10.0,
    delta: float = 1e-5,
    baselines: bool = True,
    echo: Echo = print,
    simulate_sites: int = 4,
    simulate_rows: int = 5000,
    seed: int = 7,
    site_policy: dict[str, Any] | None = None,
    **hyperparameters: Any,
) -> dict[str, Any]:
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    site_policy = dict(site_policy or {})
    if data is not None and target and not (Path(data) / "data_dictionary.json").exists():
        # Without a dictionary nothing names the outcome: each simulated hospital's IT
        # allows the study's, as a real one would in its node.toml ([training] allowed_targets).
        site_policy.setdefault("allowed_targets", (target,))
    wb = Workbench.simulate(
        data=data,
        workdir=out,
        sites=simulate_sites,
        rows=simulate_rows,
        seed=seed,
        site_cap=site_cap,
        delta=delta,
        site_policy=site_policy,
    )
    echo(f"{len(wb.sites)} hospitals: {', '.join(wb.sites['site'])}")
    echo(
        f"private federated training: project {project!r}, epsilon {epsilon:g} per hospital "
        f"at delta {delta:g}, {rounds} rounds (Flower simulation engine, DP-SGD at every site)"
    )
    result = wb.train(
        target_epsilon=epsilon,
        rounds=rounds,
        project=project,
        target=target,
        delta=delta,
        on_round=lambda r: echo(_round_line(r)),
        **hyperparameters,
    )
    tables = [wb.held_out_metrics(result=result)[["model", "site", "num_examples", "loss", "accuracy", "auc"]]]
    if baselines:
        tables.append(
            baseline_metrics(arrays=wb.local_arrays(result=result), model=result.spec.model, hidden=result.spec.hidden)
        )
    metrics = pd.concat(tables, ignore_index=True)

    with_eps = result.epsilon()
    budget = wb.budget()
    summary: dict[str, Any] = {
        "project": project,
        "run_id": result.spec.run_id,
        "target_epsilon": epsilon,
        "delta": delta,
        "rounds_planned": rounds,
        "rounds_completed": int(result.weighted()["round"].max()) if not result.history.empty else 0,
        "stopped_reason": result.stopped_reason,
        "stop_kind": result.stop_kind,
        "epsilon_per_site": {
            r.site: {"project": r.epsilon_project, "dataset_total": r.epsilon_dataset} for r in with_eps.itertuples()
        },
        "models": {},
        "wall_seconds": None,
        "privacy_statement": result._statement(),
        "uncovered_releases": len(result.uncovered()),
        "dp_estimate_final_round": _final_estimate(result),
    }
    for model, g in metrics.groupby("model", sort=False):
        summary["models"][model] = {
            "per_site": {
                r.site: {
                    "auc": _nan_none(r.auc),
                    "accuracy": r.accuracy,
                    "loss": r.loss,
                    "num_examples": int(r.num_examples),
                }
                for r in g.itertuples()
            },
            "weighted": {m: _nan_none(_weighted(g, m)) for m in ("auc", "accuracy", "loss")},
        }

    estimate = summary["dp_estimate_final_round"]
    echo("")
    if estimate:
        echo(
            f"the hospitals' noisy evaluations of the final round, pooled: AUC {estimate['auc']:.3f} ± "
            f"{estimate['auc_sd']:.3f}, accuracy {estimate['accuracy']:.3f} ± {estimate['accuracy_sd']:.3f}"
        )
    echo("final AUC per hospital (held-out rows, computed here: only a simulation holds them):")
    pivot = metrics.pivot_table(index="site", columns="model", values="auc", sort=False)
    echo(pivot.to_string(float_format=lambda v: f"{v:.3f}"))
    echo("weighted: " + ", ".join(f"{m} {summary['models'][m]['weighted']['auc']:.3f}" for m in summary["models"]))
    echo("")
    echo("privacy spent per hospital (each hospital's own ledger, PLD accountant):")
    for r in with_eps.itertuples():
        echo(
            f"  {r.site}: epsilon {r.epsilon_project:.3f} for this study, {r.epsilon_dataset:.3f} in total, delta {delta:g}"
        )
    echo(result._statement())
    if result.stopped_reason:
        echo(f"STOPPED: {result.stopped_reason}")

    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with (out / "receipts.jsonl").open("a") as fh:
        for receipt in result.receipts:
            fh.write(json.dumps(receipt) + "\n")
    budget.to_csv(out / "budget.csv", index=False)
    echo(
        f"\nwrote {out / 'summary.json'}, {out / 'receipts.jsonl'} and the ledgers under {out / 'sites'} "
        f"({summary['wall_seconds']:.0f} s)"
    )
    return summary


def _final_estimate(result: Any) -> dict[str, float] | None:
    pooled = result.weighted()
    if pooled.empty or "auc_sd" not in pooled:
        return None
    last = pooled.iloc[-1]
    return {k: _nan_none(float(last[k])) for k in ("auc", "auc_sd", "accuracy", "accuracy_sd", "loss")}


def _nan_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
