"""What a training returns: a history, the model, per-site numbers, the receipts."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from torch import nn

from federation.data.dictionary import DataDictionary
from federation.protocol.spec import TrainingSpec
from federation.training.features import FeatureEncoder


@dataclass
class TrainingResult:
    """The outcome of ``Workbench.train``.

    ``history`` has one row per round and site: the metrics of the site's noisy
    evaluation on its held-out rows (estimates, with ``auc_sd``: each site adds noise
    to its counts and charges it to the project) and the project's epsilon its ledger
    reports after that round; ``evaluation`` is the last round; ``pooled`` has one row
    per round with every site's noisy counts pooled (the better estimate); ``model`` is
    the trained torch model; ``receipts`` are the sites' signed spend receipts as the
    coordinator mirrors them. ``dataset_totals`` (site -> epsilon of every project at
    that site) is known only where the caller holds the ledgers (a simulation).
    """

    spec: TrainingSpec
    history: pd.DataFrame
    model: nn.Module
    receipts: list[dict[str, Any]] = field(default_factory=list)
    stopped_reason: str = ""
    encoder: FeatureEncoder | None = None
    study_dictionary: DataDictionary | None = None  # when ranges came from a DP query
    charges: list[Any] = field(default_factory=list)  # connected: run_folder.SiteCharge per site

    @property
    def stop_kind(self) -> str:
        """Why the study stopped early: "refused" (a site said no: policy, budget, paused),
        "failed" (a site failed or did not answer), or "" (it ran every round)."""
        if not self.stopped_reason:
            return ""
        statuses = set(self.history["status"]) if not self.history.empty else set()
        return "failed" if "failed" in statuses or "refused" not in statuses else "refused"

    def charges_frame(self) -> pd.DataFrame:
        """Per site: rounds charged, the project's epsilon, and what could not be confirmed."""
        rows = [c.to_json() for c in self.charges]
        return pd.DataFrame(rows, columns=["site", "rounds_charged", "epsilon_project", "releases", "unconfirmed"])

    pooled: pd.DataFrame = field(default_factory=pd.DataFrame)
    dataset_totals: dict[str, float] | None = None

    @property
    def feature_names(self) -> list[str]:
        return self.encoder.feature_names if self.encoder else []

    @property
    def evaluation(self) -> pd.DataFrame:
        if self.history.empty:
            return self.history
        last = self.history[self.history["status"] == "ok"]["round"].max()
        return self.history[self.history["round"] == last].reset_index(drop=True)

    def weighted(self) -> pd.DataFrame:
        """Per round: metrics over all sites, from their noisy counts pooled (``pooled``),
        or, without those, averaged over sites weighted by held-out rows."""
        if not self.pooled.empty:
            return self.pooled.reset_index(drop=True)
        h = self.history[self.history["status"] == "ok"].copy()
        out = []
        for rnd, g in h.groupby("round"):
            w = g["num_test"].astype(float)
            if not w.sum() > 0:  # a round whose evaluation did not run (a site failed its training)
                continue
            out.append(
                {
                    "round": rnd,
                    **{m: float((g[m] * w).sum() / w.sum()) for m in ("loss", "accuracy", "auc")},
                    "max_epsilon": float(g["epsilon_project"].max()),
                }
            )
        return pd.DataFrame(out)

    def epsilon(self) -> pd.DataFrame:
        """Each site's epsilon for this project and, where known (a simulation holds the
        ledgers), for its dataset over all projects (else NaN: a site never tells)."""
        ev = self.evaluation
        if ev.empty:
            return pd.DataFrame(columns=["site", "epsilon_project", "epsilon_dataset"])
        eps = ev[["site", "epsilon_project"]].reset_index(drop=True)
        totals = self.dataset_totals or {}
        eps["epsilon_dataset"] = [totals.get(site, float("nan")) for site in eps["site"]]
        return eps

    def uncovered(self) -> list[dict[str, Any]]:
        """The receipts of releases without noise (a site's opt-in), one per release."""
        return [r for r in self.receipts if r.get("kind") == "uncovered"]

    def statement(self) -> str:
        """The privacy guarantee in words: the worst site's epsilon for this study, and
        any number released without noise (a site's opt-in)."""
        eps = self.epsilon()
        worst = eps["epsilon_project"].max() if not eps.empty else float("nan")
        uncovered = self.uncovered()
        if uncovered:
            sites = sorted({str(r.get("site_id")) for r in uncovered})
            tail = (
                f" {len(uncovered)} number(s) were ALSO released without noise, because the site's policy opts in "
                f"to uncovered releases ({', '.join(sites)}): each is listed as an uncovered release in that "
                "site's ledger, and no differential privacy guarantee covers it."
            )
        else:
            tail = " No number left any hospital without noise."
        return (
            f"Each hospital's patients are protected by record-level differential privacy: "
            f"at most epsilon {worst:.3g} at delta {self.spec.delta:g} per hospital for this "
            f"study (add or remove one patient), as composed by each hospital's own ledger "
            f"from everything it released: the DP-SGD steps that ran, its noisy evaluations and "
            f"its one noisy number of training records (the FedAvg weight).{tail}"
        )

    def __repr__(self) -> str:
        w = self.weighted()
        last = w.iloc[-1] if not w.empty else None
        head = f"TrainingResult(project={self.spec.project!r}, rounds={len(w)}/{self.spec.rounds}, " + (
            f"weighted AUC={last['auc']:.3f}, accuracy={last['accuracy']:.3f})" if last is not None else "no rounds)"
        )
        stop = f"\nStopped: {self.stopped_reason}" if self.stopped_reason else ""
        charged = ""
        if self.stopped_reason and self.charges:
            charged = "\nWhat each site was charged:\n" + "\n".join(f"  {c.line()}" for c in self.charges)
        return f"{head}\n{self.epsilon().to_string(index=False)}\n{self.statement()}{stop}{charged}"

    def _repr_html_(self) -> str:
        stop = f"<p style='color:#a00'><b>Stopped:</b> {self.stopped_reason}</p>" if self.stopped_reason else ""
        if self.stopped_reason and self.charges:
            stop += (
                "<b>What each site was charged</b><ul>"
                + "".join(f"<li>{html.escape(c.line())}</li>" for c in self.charges)
                + "</ul>"
            )
        return (
            f"<h4>Training result: project <code>{self.spec.project}</code></h4>{stop}"
            f"<p>{self.statement()}</p>"
            f"<b>Per round (weighted over sites)</b>{self.weighted().to_html(index=False, float_format='%.4f')}"
            f"<b>Final round, per site</b>{self.evaluation.to_html(index=False, float_format='%.4f')}"
        )
