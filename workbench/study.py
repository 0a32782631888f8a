"""The main job: one private federated study, printed round by round, with its summary.

``workbench study --data FOLDER`` and ``workbench demo`` run it on hospitals simulated
here; ``workbench study --coordinator FOLDER`` on real hospital nodes behind a running
coordinator. One path for both (``Workbench.simulate`` or ``Workbench.connect``, then
``train``): each round's metrics and every hospital's epsilon as it is spent, then
``summary.json`` and the receipts in ``out``.

The hospitals send no metric: each round's AUC and accuracy are estimates from every
hospital's noisy evaluation counts, pooled, with their standard deviation under the
noise. Where the back end holds the hospitals' tables (a simulation), the final table
is computed from the held-out rows themselves, for the federated model and the
non-private baselines alike. Whatever stops a study, ``summary.json`` lists what each
site was charged; the error is raised after that, carrying the same charges.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from federation.data.errors import DataDictionaryError
from workbench.backends.base import LEDGERS, SITE_DATA
from workbench.baselines import baseline_metrics
from workbench.errors import WorkbenchError
from workbench.progress import round_line
from workbench.results import TrainingResult
from workbench.session import Workbench

Echo = Callable[[str], None]


def _weighted(frame: pd.DataFrame, metric: str) -> float:
    ok = frame.dropna(subset=[metric])
    if ok.empty:
        return float("nan")
    return float((ok[metric] * ok["num_examples"]).sum() / ok["num_examples"].sum())


def run_study(
    *,
    out: Path,
    epsilon: float,
    rounds: int,
    data: Path | None = None,
    coordinator: Path | None = None,
    target: str | None = None,
    project: str = "study",
    delta: float = 1e-5,
    echo: Echo = print,
    site_cap: float = 10.0,
    baselines: bool = True,
    simulate_sites: int = 4,
    simulate_rows: int = 5000,
    seed: int = 7,
    site_policy: dict[str, Any] | None = None,
    dictionary: Path | None = None,
    researcher: Path | None = None,
    passphrase: str | None = None,
    site_timeout: float = 600.0,
    timeout: float = 1800.0,
    **hyperparameters: Any,
) -> dict[str, Any]:
    """One study: on hospitals simulated from ``data`` (or synthetic ones: ``simulate_*``,
    ``seed``, each with ``site_cap``), or with ``coordinator`` on the sites behind that
    coordinator folder (``dictionary`` required; signed with ``researcher``). Prints each
    round (and, while it waits, which site is late), writes ``summary.json`` and
    ``receipts.jsonl`` to ``out`` (and a simulation's ``budget.csv``)."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    if coordinator is not None:
        if dictionary is None:
            raise DataDictionaryError(
                "--dictionary is required with --coordinator: the study encodes features from the public "
                "data dictionary (the sites' data never leaves them)."
            )
        wb = Workbench.connect(
            coordinator=coordinator, dictionary=dictionary, researcher=researcher, passphrase=passphrase
        )
        echo(f"{len(wb.sites)} sites through {wb.backend.name}")
        engine = "Flower Deployment Engine"
    else:
        wb = _simulation(
            data=data,
            out=out,
            target=target,
            site_cap=site_cap,
            delta=delta,
            site_policy=site_policy,
            sites=simulate_sites,
            rows=simulate_rows,
            seed=seed,
        )
        echo(f"{len(wb.sites)} hospitals: {', '.join(wb.sites['site'])}")
        engine = "Flower simulation engine"
    echo(
        f"private federated training: project {project!r}, epsilon {epsilon:g} per hospital at delta {delta:g} "
        f"(the project's total at each hospital), {rounds} rounds ({engine}, DP-SGD at every site)"
    )
    summary: dict[str, Any] = {"project": project, "target_epsilon": epsilon, "delta": delta, "rounds_planned": rounds}

    def started_run(run_id: str) -> None:
        summary["run_id"] = run_id
        echo(
            f"run {run_id}: Ctrl-C cancels it; from elsewhere: `workbench study cancel {run_id} --coordinator {coordinator}`"
        )

    def write_summary() -> None:
        summary["wall_seconds"] = round(time.monotonic() - started, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))

    try:
        result = wb.train(
            target_epsilon=epsilon,
            rounds=rounds,
            project=project,
            target=target,
            delta=delta,
            on_round=lambda r: echo(round_line(r)),
            on_wait=echo,
            on_start=started_run,
            site_timeout=site_timeout,
            timeout=timeout,
            **hyperparameters,
        )
    except WorkbenchError as err:
        summary.update(
            {
                "status": type(err).__name__,
                "error": str(err),
                "charges": [c.to_json() for c in err.charges],
                "charges_from": "the sites' signed receipts that reached the coordinator (its mirror)",
            }
        )
        write_summary()
        raise
    summary.update(_outcome(result))
    if SITE_DATA in wb.capabilities:
        summary["models"] = _exact_metrics(wb=wb, result=result, baselines=baselines, echo=echo)
    _say_privacy(result=result, delta=delta, echo=echo)
    write_summary()
    with (out / "receipts.jsonl").open("a") as fh:
        for receipt in result.receipts:
            fh.write(json.dumps(receipt) + "\n")
    written = f"{out / 'summary.json'} and {out / 'receipts.jsonl'}"
    if LEDGERS in wb.capabilities:
        wb.budget().to_csv(out / "budget.csv", index=False)
        written = f"{out / 'summary.json'}, {out / 'receipts.jsonl'} and the ledgers under {out / 'sites'}"
    echo(f"\nwrote {written} ({summary['wall_seconds']:.0f} s)")
    return summary


def _simulation(
    *,
    data: Path | None,
    out: Path,
    target: str | None,
    site_cap: float,
    delta: float,
    site_policy: dict[str, Any] | None,
    sites: int,
    rows: int,
    seed: int,
) -> Workbench:
    site_policy = dict(site_policy or {})
    if data is not None and target and not (Path(data) / "data_dictionary.json").exists():
        # Without a dictionary nothing names the outcome: each simulated hospital's IT
        # allows the study's, as a real one would in its node.toml ([training] allowed_targets).
        site_policy.setdefault("allowed_targets", (target,))
    return Workbench.simulate(
        data=data,
        workdir=out,
        sites=sites,
        rows=rows,
        seed=seed,
        site_cap=site_cap,
        delta=delta,
        site_policy=site_policy,
    )


def _outcome(result: TrainingResult) -> dict[str, Any]:
    """What every study's summary says, whichever back end ran it."""
    weighted = result.weighted()
    return {
        "run_id": result.spec.run_id,
        "status": "stopped" if result.stopped_reason else "finished",
        "rounds_completed": int(weighted["round"].max()) if not weighted.empty else 0,
        "stopped_reason": result.stopped_reason,
        "stop_kind": result.stop_kind,
        "epsilon_per_site": {
            r.site: {"project": r.epsilon_project, "dataset_total": r.epsilon_dataset}
            for r in result.epsilon().itertuples()
        },
        "charges": [c.to_json() for c in result.charges],
        "weighted": weighted.to_dict(orient="records"),
        "privacy_statement": result.statement(),
        "uncovered_releases": len(result.uncovered()),
        "dp_estimate_final_round": _final_estimate(result),
    }


def _exact_metrics(*, wb: Workbench, result: TrainingResult, baselines: bool, echo: Echo) -> dict[str, Any]:
    """The final model (and the non-private baselines) on every site's held-out rows,
    computed here: only a back end that holds the hospitals' tables can."""
    tables = [wb.held_out_metrics(result=result)[["model", "site", "num_examples", "loss", "accuracy", "auc"]]]
    if baselines:
        tables.append(
            baseline_metrics(arrays=wb.local_arrays(result=result), model=result.spec.model, hidden=result.spec.hidden)
        )
    metrics = pd.concat(tables, ignore_index=True)
    models: dict[str, Any] = {}
    for model, g in metrics.groupby("model", sort=False):
        models[model] = {
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
    estimate = _final_estimate(result)
    echo("")
    if estimate:
        echo(
            f"the hospitals' noisy evaluations of the final round, pooled: AUC {estimate['auc']:.3f} ± "
            f"{estimate['auc_sd']:.3f}, accuracy {estimate['accuracy']:.3f} ± {estimate['accuracy_sd']:.3f}"
        )
    echo("final AUC per hospital (held-out rows, computed here: only a simulation holds them):")
    pivot = metrics.pivot_table(index="site", columns="model", values="auc", sort=False)
    echo(pivot.to_string(float_format=lambda v: f"{v:.3f}"))
    echo("weighted: " + ", ".join(f"{m} {models[m]['weighted']['auc']:.3f}" for m in models))
    return models


def _say_privacy(*, result: TrainingResult, delta: float, echo: Echo) -> None:
    if result.dataset_totals is not None:  # the ledgers are here
        echo("")
        echo("privacy spent per hospital (each hospital's own ledger, PLD accountant):")
        for r in result.epsilon().itertuples():
            echo(
                f"  {r.site}: epsilon {r.epsilon_project:.3f} for this study, {r.epsilon_dataset:.3f} in total, "
                f"delta {delta:g}"
            )
    echo(result.statement())
    if result.stopped_reason:
        echo(f"STOPPED: {result.stopped_reason}")
        if result.charges:
            echo("what each site was charged (its signed receipts, as the coordinator mirrors them):")
            for charge in result.charges:
                echo(f"  {charge.line()}")


def _final_estimate(result: Any) -> dict[str, float] | None:
    pooled = result.weighted()
    if pooled.empty or "auc_sd" not in pooled:
        return None
    last = pooled.iloc[-1]
    return {k: _nan_none(float(last[k])) for k in ("auc", "auc_sd", "accuracy", "accuracy_sd", "loss")}


def _nan_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
