"""The heart-disease table (per-centre mean accuracy and AUC over seeds), beside the
majority-label baseline and FLamby's published figures, as markdown and a plot."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.heart_disease.search import Choice
from benchmarks.machine import machine_lines

MAJORITY_PUBLISHED = 0.721
FLAMBY = {  # du Terrail et al. 2022, Fed-Heart-Disease, mean per-centre test accuracy over 5 seeds
    "pooled": "0.735",
    "local only": "0.567-0.722",
    "FedAvg": "0.685 (FedYogi 0.731, FedAdam 0.726)",
    "FedAvg + site intercept": "FedAvg 0.685, FedYogi 0.731",
}
FLAMBY_DP = "0.69-0.71 (epsilon 1-10, but spending more than stated)"
# FLamby's own stored result file (owkin/FLamby flamby/results/results_benchmark_fed_heart_disease.csv,
# commit 638efb6, one run), re-read: the mean of its four client_test accuracies per method.
FLAMBY_FILE = {
    "Pooled Training": 0.781,
    "Local 0-3": "0.516-0.723",
    "FedAvg (100 updates)": 0.531,
    "FedYogi (100)": 0.637,
    "FedAdam (100)": 0.478,
    "Scaffold (100)": 0.680,
}
FENDA_FL = 0.812  # Tavakoli et al. 2023, FENDA-FL, non-private and personalised: the strongest published row


@dataclass
class Row:
    name: str
    method: str
    path: str
    accuracy: list[float]  # per seed: mean over centres
    auc: list[float]
    per_centre: dict[str, float]  # accuracy per centre, mean over seeds
    choice: Choice | None = None
    target_epsilon: float | None = None
    spent: list[float] = field(default_factory=list)
    # DP rows: "uncharged", "synth-" (tuned on synthetic data), "tuned-" (charged search) or
    # "tuned2-" (two-stage: the synthetic search's shortlist, charged)
    family: str = ""
    chosen: list[str] = field(default_factory=list)  # the charged search's choice, per seed

    @classmethod
    def from_runs(
        cls, *, name, method, path, runs, choice=None, target_epsilon=None, spent=(), family="", chosen=()
    ) -> Row:
        centres = list(runs[0])
        return cls(
            name=name,
            method=method,
            path=path,
            accuracy=[float(np.mean([r[c]["accuracy"] for c in centres])) for r in runs],
            auc=[float(np.nanmean([r[c]["auc"] for c in centres])) for r in runs],
            per_centre={c: float(np.mean([r[c]["accuracy"] for r in runs])) for c in sorted(centres)},
            choice=choice,
            target_epsilon=target_epsilon,
            spent=list(spent),
            family=family,
            chosen=list(chosen),
        )

    @classmethod
    def baseline(cls, per_centre: dict[str, float]) -> Row:
        mean = float(np.mean(list(per_centre.values())))
        return cls(
            name="majority label (no training)",
            method="each centre predicts its training majority",
            path="-",
            accuracy=[mean],
            auc=[0.5],
            per_centre=dict(sorted(per_centre.items())),
        )

    def as_dict(self) -> dict:
        return {
            "row": self.name,
            "accuracy": float(np.mean(self.accuracy)),
            "accuracy_sd": float(np.std(self.accuracy)) if len(self.accuracy) > 1 else 0.0,
            "auc": float(np.mean(self.auc)),
            "target_epsilon": self.target_epsilon,
            "epsilon_spent": max(self.spent) if self.spent else None,
            "vs_majority": float(np.mean(self.accuracy)) - MAJORITY_PUBLISHED,
            "path": self.path,
            **{f"acc_{c}": v for c, v in self.per_centre.items()},
            "hyperparameters": self.choice.hp.label() if self.choice else "",
        }


def interval(values: list[float]) -> tuple[float, float]:
    """A 95% t-interval for the mean over seeds."""
    from scipy import stats

    mean, n = float(np.mean(values)), len(values)
    half = float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n))
    return mean - half, mean + half


def _fmt(x, digits=3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _flamby(row: Row) -> str:
    if row.family in ("synth-", "tuned-", "tuned2-"):
        return f"{FLAMBY_DP}; FENDA-FL {FENDA_FL} non-private"
    if row.target_epsilon is not None:
        return FLAMBY_DP
    return FLAMBY.get(row.name, "0.721 (their split)" if row.path == "-" else "-")


def markdown_table(rows: list[Row]) -> str:
    """The results table: one line per row, per-centre accuracy and FLamby's figure beside it."""
    centres = list(rows[0].per_centre)
    head = [
        "row",
        "accuracy (mean ± sd over seeds [95% interval])",
        "AUC",
        "epsilon spent (max over sites, from ledgers)",
        "vs majority 0.721",
        *centres,
        "FLamby published",
        "ran",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        d = r.as_dict()
        acc = f"{d['accuracy']:.3f} ± {d['accuracy_sd']:.3f}" if len(r.accuracy) > 1 else f"{d['accuracy']:.3f}"
        if len(r.accuracy) > 1:
            low, high = interval(r.accuracy)
            acc += f" [{low:.3f}, {high:.3f}]"
        eps = "-" if d["epsilon_spent"] is None else f"{d['epsilon_spent']:.3f} (target {r.target_epsilon:g})"
        if r.family == "uncharged":
            eps += ", tuning NOT charged"
        elif r.family in ("tuned-", "tuned2-"):
            eps += ", search + final, composed"
        cells = [
            r.name,
            acc,
            _fmt(d["auc"]),
            eps,
            f"{d['vs_majority']:+.3f}",
            *[_fmt(r.per_centre[c]) for c in centres],
            _flamby(r),
            r.path,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(*, rows: list[Row], path: Path) -> None:
    """Accuracy per row (mean and sd over seeds) against the baseline and FLamby's figures."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.3), dpi=90)
    names = [r.name for r in rows]
    means = [np.mean(r.accuracy) for r in rows]
    sds = [np.std(r.accuracy) for r in rows]
    colours = ["#999999" if r.path == "-" else "#d62728" if r.target_epsilon else "#1f77b4" for r in rows]
    ax.barh(range(len(rows)), means, xerr=sds, color=colours)
    ax.axvline(MAJORITY_PUBLISHED, color="k", ls="--", lw=1, label="majority label 0.721")
    ax.axvline(0.735, color="#2ca02c", ls=":", lw=1.5, label="FLamby pooled 0.735")
    ax.axvline(0.685, color="#ff7f0e", ls=":", lw=1.5, label="FLamby FedAvg 0.685")
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.5, 0.9)
    ax.set_xlabel("average per-centre test accuracy (FLamby's split)")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.4, -0.16))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_results(
    *,
    out: Path,
    table: pd.DataFrame,
    rows: list[Row],
    baseline: dict[str, float],
    seeds: int,
    folds: int,
    nonprivate_grid: dict,
    dp_grid: dict,
    command: str,
    seconds: float,
    charged: tuple = (),
    plans: dict | None = None,
    refused: dict | None = None,
    two_stage: dict | None = None,
) -> Path:
    """Write ``out`` (protocol, search, table) and its plot; return the plot's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plot(rows=rows, path=png)
    chosen = [
        f"- {r.name}: {r.choice.hp.label()} ({'synthetic ' if r.family == 'synth-' else ''}validation accuracy "
        f"{r.choice.val_accuracy:.3f}, "
        f"AUC {r.choice.val_auc:.3f}, {r.choice.tried} candidates)"
        for r in rows
        if r.choice
    ]
    lines = [
        "# Fed-Heart-Disease: the four UCI hospitals under FLamby's protocol",
        "",
        *headline(rows),
        "",
        f"Generated by `{command}` in {seconds:.0f} s.",
        "",
        *machine_lines(),
        "## Protocol",
        "",
        "- Data: FLamby's preprocessing of the UCI files (columns slope, ca, thal dropped; rows with a missing "
        "value dropped: 303/261/46/130 rows), target `num > 0`, each centre split 0.66/0.34 with "
        "`train_test_split(random_state=43)`, stratified as FLamby does. The split reproduces FLamby's "
        f"majority-label baseline: {np.mean(list(baseline.values())):.4f} average per-centre accuracy.",
        "- Metric: accuracy (threshold 0.5) on each centre's test rows, averaged over the four centres, then "
        f"mean over {seeds} seed(s) (model initialisation, SGD order, DP noise); AUC averaged the same way.",
        "- Features: scaled by the public ranges of the UCI data dictionary (`datasets_synthetic`), values it "
        "marks as not measured (cholesterol 0, blood pressure 0) become missing with an indicator. "
        "Unlike FLamby, no per-centre mean or standard deviation is read from the data.",
        '- Model: logistic regression. "site intercept": each site also trains its own logit offset '
        "(`TrainingSpec(site_offset=True)`); it never leaves the site and is trained in the same DP-SGD steps "
        "as the shared weights, so the site's charge covers it.",
        "- DP rows: the workbench's real path: Flower's simulation engine, each site's ClientApp with its "
        "ledger (reserve, DP-SGD with the vectorised engine, commit the steps that ran), FedAvg. The noise is "
        "calibrated by each site for its own sampling rate and all planned rounds; `epsilon spent` is read "
        "back from the four ledgers after the run (delta 1e-5), the largest of the four. Every study runs "
        "under its own project; the charged search's candidates run in one simulation (one engine start), "
        "every final training in a second.",
        "- Non-private rows (pooled, local only, FedAvg) run in this process with plain SGD on the same "
        "model, data and encoding: no ledger is involved.",
        "",
        "## Hyperparameters: chosen on validation splits of the training rows, never on the test rows",
        "",
        f"Each centre's training rows were split again 0.66/0.34 (stratified), {folds} time(s) with different "
        "seeds; every grid point was trained on the inner training rows of all centres and scored by the "
        "average per-centre validation accuracy (AUC breaks ties). The DP search runs the sites' own DP-SGD "
        "code and noise calibration in this process at each target epsilon.",
        "",
        f"- non-private grid: {nonprivate_grid} (momentum 0.5)",
        f"- DP grid: {dp_grid} (momentum 0.5, site intercept on)",
        "- Reproducibility: DP-SGD draws its sampling and noise from OS entropy, as a site's must, in the "
        "search as in the studies. The non-private choices repeat exactly; the DP choices and figures vary "
        "from run to run (most at epsilon 0.5, where validation scores of neighbouring grid points differ "
        "by less than the noise).",
        "",
        "Chosen:",
        "",
        *chosen,
        "",
        *tuning_section(rows=rows, charged=charged, plans=plans or {}, refused=refused or {}),
        *two_stage_section(rows=rows, two_stage=two_stage or {}),
        "## Results",
        "",
        markdown_table(rows),
        "",
        f"![accuracy per row]({png.name})",
        "",
        "FLamby's published figures (du Terrail et al. 2022): pooled 0.735, local 0.567-0.722, FedAvg 0.685, "
        "FedAdam 0.726, FedYogi/FedAdagrad 0.731; DP-FedAvg 0.69-0.71 at a stated epsilon 1-10, though their "
        "noise is calibrated for fewer steps than run (about 4.5 spent instead of 1 at Switzerland). FLamby "
        "normalises each centre with its own raw statistics; here scaling is public.",
        "",
        "FLamby's own stored result file, re-read (owkin/FLamby `flamby/results/results_benchmark_fed_heart_disease.csv` "
        "at commit 638efb6, one run; the mean of its four `client_test` accuracies per method): "
        + ", ".join(f"{k} {v if isinstance(v, str) else f'{v:.3f}'}" for k, v in FLAMBY_FILE.items())
        + ". They differ from the paper's table (which averages 5 seeds); both are quoted.",
        "",
        f"FENDA-FL (Tavakoli et al. 2023), personalised and non-private, reports {FENDA_FL} mean per-centre "
        "accuracy on the same split: the strongest published non-private figure.",
        "",
    ]
    out.write_text("\n".join(lines))
    return png


def headline(rows: list[Row]) -> list[str]:
    """The honest figure first: the best row at total epsilon 1 whose tuning is paid or free."""
    honest = [r for r in rows if r.family in ("synth-", "tuned-", "tuned2-") and r.target_epsilon == 1.0]
    if not honest:
        return ["No honest row at total epsilon 1 ran in this configuration (see below for what ran).", ""]
    best = max(honest, key=lambda r: np.mean(r.accuracy))
    mean = float(np.mean(best.accuracy))
    verdict = (
        "meets the aim of 0.82"
        if mean >= 0.82
        else "meets the target of 0.80 (not the aim of 0.82)"
        if mean >= 0.80
        else "MISSES the target of 0.80"
    )
    return [
        f"**Headline (honest): at total epsilon 1 per hospital, tuning and evaluation included, "
        f"{best.name} reaches mean per-centre accuracy {mean:.3f} over {len(best.accuracy)} seed(s): {verdict}.** "
        'The rows labelled "tuning not charged" are the old figures, kept for comparison with the literature: '
        "their hyperparameters were chosen by DP runs on the hospitals' own rows that no ledger charged. The "
        "final accuracy on FLamby's test split is the benchmark's measurement, not a release.",
        "",
    ]


def tuning_section(*, rows: list[Row], charged: tuple, plans: dict, refused: dict | None = None) -> list[str]:
    """What the two honest row families did, with the charged split per epsilon."""
    out = [
        "## How the DP rows were tuned: three families",
        "",
        "- **tuning not charged** (the old rows): the grid above, searched by DP runs on the hospitals' own "
        "training rows in this process, outside every ledger; only the final training is charged. The end-to-end "
        "procedure spends more than the epsilon in the row.",
        "- **tuned on synthetic hospitals (free)**: the same grid and search, on four hospitals of FLamby's "
        "published sizes drawn from the public UCI data dictionary alone, with an outcome from a stated public "
        "prior (`benchmarks/heart_disease/tuning_rows.py`, `datasets_synthetic/from_dictionary.py`); no hospital's "
        "row is read, so the search costs nothing and the final training spends the whole epsilon. The choice is "
        "only as good as the prior.",
        "- **tuned with every candidate charged**: the split of `workbench.tuning_plan` (the same arithmetic as "
        "`wb.plan_tuning`): each candidate is a Flower study charged to the hospital's one ledger under its own "
        f"project, on the hospital's training rows with a validation third held out; the best by the sites' pooled "
        f"noisy validation accuracy (post-processing) is trained again on all training rows with half of the total "
        f"as its own target. The epsilon shown is every candidate project and the final one composed, read back "
        f"from the ledgers (the largest over the four). {len(charged)} candidates: "
        + "; ".join(hp.label() for hp in charged)
        + ".",
        "",
    ]
    for epsilon, plan in sorted(plans.items()):
        out.append(
            f"- total {epsilon:g}: each candidate at epsilon {plan.candidate_epsilon:.3g} per hospital, the final "
            f"training at {plan.final_target:.3g}; planned total {plan.per_site['total_after'].max():.3f} "
            f"(adding the runs' epsilons would say {plan.per_site['naive_sum'].max():.3g})"
        )
    for epsilon, why in sorted((refused or {}).items()):
        out.append(f"- total {epsilon:g}: **not run**, the plan was refused before anything ran: {why}")
    for r in rows:
        if r.family == "tuned-" and r.chosen:
            out.append(f"- {r.name}: chosen per seed: " + " | ".join(r.chosen))
    out.append("")
    return out


def two_stage_section(*, rows: list[Row], two_stage: dict) -> list[str]:
    """(d): the free synthetic search keeps its best two, and only those are charged."""
    shortlist = two_stage.get("shortlist", {})
    if not shortlist:
        return []
    out = [
        "## Two-stage search: the synthetic search shortlists, the charged search chooses",
        "",
        "The free search on synthetic hospitals ranks the DP grid at the row's epsilon; its best two go to a "
        "charged search exactly like (b) (every candidate a Flower study charged to the hospital's ledger on its "
        "training rows with a validation third held out, best by the noisy pooled validation accuracy, trained "
        "again at half the total). The shortlist is chosen without reading any hospital's row, and never by "
        "test accuracy; the epsilon shown composes both candidates and the final training, read from the ledgers.",
        "",
    ]
    for epsilon, hps in sorted(shortlist.items()):
        out.append(f"- total {epsilon:g}: shortlist " + " | ".join(hp.label() for hp in hps))
        plan = two_stage.get("plans", {}).get(epsilon)
        if plan is not None:
            out.append(
                f"  - each candidate at epsilon {plan.candidate_epsilon:.3g} per hospital, the final training at "
                f"{plan.final_target:.3g}; planned total {plan.per_site['total_after'].max():.3f} (adding would say "
                f"{plan.per_site['naive_sum'].max():.3g})"
            )
        why = two_stage.get("refused", {}).get(epsilon)
        if why:
            out.append(f"  - **not run**, the plan was refused before anything ran: {why}")
    for r in rows:
        if r.family == "tuned2-" and r.chosen:
            out.append(f"- {r.name}: chosen per seed: " + " | ".join(r.chosen))
    out.append("")
    return out
