"""Planning a private training before anything is spent.

For each site: the sampling rate and steps its own data give, how its policy splits
the target between DP-SGD and its noisy evaluations (``evaluation_share``; the
evaluations' epsilon on their own and the DP-SGD's on its own, which together compose
to the target), the noise it will calibrate, what its ledger would hold afterwards,
and whether the training fits its cap. Beside it, a what-if table of epsilon against
noise and rounds (DP-SGD alone).
"""

from __future__ import annotations

import html
import logging
import math
from collections import Counter
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dp_accounting as dpa
import pandas as pd

from federation.errors import BadInput
from federation.protocol.spec import TrainingSpec
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.ledger_keys import open_site_ledger
from federation.site.node_keys import DEFAULT_ALLOWED_TASKS
from federation.site.plan import SitePlan, calibrate_plan
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder
from privacy_budgets import accounting, plan_dpsgd
from privacy_budgets.mechanisms import base_counts, composed_event, event_from_json, events_from_counts
from workbench.tuning_plan import SiteFacts, site_run_plan


@dataclass
class TrainingPlan:
    """Projected privacy per site for a training spec; ``what_if`` varies noise and rounds."""

    spec: TrainingSpec
    per_site: pd.DataFrame
    what_if: pd.DataFrame
    #: What the plan stands on, in words (each site's own rows and ledger; or noisy counts).
    basis: str = ""

    @property
    def fits(self) -> bool:
        return bool(self.per_site["fits"].all())

    def plot(self, ax: Any = None):
        """Epsilon against rounds, one line per noise multiplier (smallest site)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        for sigma, g in self.what_if.groupby("noise_multiplier"):
            ax.plot(g["rounds"], g["epsilon"], marker="o", label=f"noise {sigma:g}")
        ax.axhline(self.spec.target_epsilon, color="grey", ls="--", lw=1, label="target")
        ax.set(
            xlabel="rounds",
            ylabel=f"epsilon at delta {self.spec.delta:g}",
            title=f"What-if at the smallest site ({self.what_if['site'].iloc[0]})",
        )
        ax.legend(fontsize=8)
        return ax

    def __repr__(self) -> str:
        verdict = "fits every site's budget" if self.fits else "does NOT fit every site's budget"
        head = f"TrainingPlan({self.spec.rounds} rounds, target epsilon {self.spec.target_epsilon:g}: {verdict})"
        return f"{head}\n{self.per_site.to_string(index=False)}" + (f"\n\n{self.basis}" if self.basis else "")

    def _repr_html_(self) -> str:
        verdict = (
            "<span style='color:#1a7f37'>fits every site's budget</span>"
            if self.fits
            else "<span style='color:#cf222e'><b>does not fit</b> every site's budget: see the rows marked False</span>"
        )
        return (
            f"<h4>Training plan: {self.spec.rounds} rounds, target epsilon {self.spec.target_epsilon:g} "
            f"per site</h4><p>The plan {verdict}. Each site calibrates its own noise for all "
            f"rounds at its own sampling rate, after setting aside its <code>evaluation_share</code> of "
            f"the target for its noisy evaluations and its one noisy row count; nothing has been spent.</p>"
            + (f"<p>{html.escape(self.basis)}</p>" if self.basis else "")
            + self.per_site.to_html(index=False, float_format=lambda v: f"{v:.4g}")
        )


SIMULATION_BASIS = (
    "Planned from each site's own rows, policy and ledger, which a simulation holds on this machine; "
    "each site calibrates its own noise again when the study starts."
)


def plan_training(
    *,
    sites: list[SiteConfig],
    encoder: FeatureEncoder,
    target_epsilon: float,
    rounds: int,
    project: str = "plan",
    noise_multipliers: tuple[float, ...] = (0.8, 1.0, 1.5, 2.0, 3.0),
    **hyperparameters: Any,
) -> TrainingPlan:
    """Each of ``sites`` plans ``encoder``'s study with its own rows, policy and ledger
    (what ``Workbench.plan_training`` shows where the sites are on this machine)."""
    spec = TrainingSpec(project=project, target_epsilon=target_epsilon, rounds=rounds, **hyperparameters)
    rows = []
    smallest: tuple[str, SitePlan] | None = None
    for config in sites:
        site = config.site_id
        policy = NodePolicy.default_for(config)
        # In a simulation the rows are here to count; a real site states them in its plan.
        n_train = len(site_arrays(site=config, policy=policy, encoder=encoder).y_train)
        with open_site_ledger(config) as ledger:
            # A project whose earlier spending leaves no room raises PlanRefused here: one
            # paragraph with its own numbers, the same words a site would send. The plan is
            # the site's own calibration (federation/site/plan.py), split as its policy says.
            plan = calibrate_plan(
                ledger=ledger, spec=spec, dataset=config.dataset, n_train=n_train, policy=policy, include_reserved=False
            )
            cost = ledger.cost(dataset=config.dataset, project=project, event=composed_event(plan.planned_events()))
            dataset_after, remaining = cost.dataset_total_after, cost.dataset_remaining_after
            allocation = ledger.allocation(dataset=config.dataset, project=project)
            fits = remaining >= -1e-9 and (allocation is None or cost.project_remaining_after >= -1e-9)
            if remaining < -1e-9:
                binding = (
                    f"the dataset's cap would be exceeded: total after {dataset_after:.3g}, "
                    f"cap {ledger.cap(dataset=config.dataset):g}"
                )
            elif allocation is None:
                binding = (
                    f"no allocation for project '{project}' yet: the ethics board must grant at "
                    f"least {target_epsilon:g} (a simulation grants it at train time)"
                )
            else:
                binding = cost.binding
            binding += minimum_noise_note(plan)
            cap = ledger.cap(dataset=config.dataset)
        rows.append(
            {
                "site": site,
                **plan_columns(plan),
                "project_total_after": cost.project_total_after,
                "dataset_spent_before": ledger_spent(config),
                "dataset_total_after": dataset_after,
                "cap": cap if cap is not None else float("nan"),
                "cap_remaining_after": remaining,
                "fits": fits,
                "binding": binding,
            }
        )
        if smallest is None or n_train < smallest[1].n_train:
            smallest = (site, plan)
    return TrainingPlan(
        spec=spec,
        per_site=pd.DataFrame(rows),
        what_if=what_if_table(site=smallest[0], plan=smallest[1], noise_multipliers=noise_multipliers),
        basis=SIMULATION_BASIS,
    )


def minimum_noise_note(plan: SitePlan) -> str:
    if not plan.at_minimum_noise:
        return ""
    return (
        f"; the least noise the site allows (noise multiplier {plan.noise_multiplier:g}) already keeps the "
        "project under its target: that noise is used, and the study spends less"
    )


def plan_columns(plan: SitePlan) -> dict[str, Any]:
    """The columns every plan shows for one site's calibration (``federation.site.plan``)."""
    return {
        "train_rows": plan.n_train,
        "sampling_rate": plan.sampling_rate,
        "steps_per_round": plan.steps_per_round,
        "noise_multiplier": plan.noise_multiplier,
        "evaluation_share": plan.evaluation_share,
        "evaluation_epsilon": plan.release_epsilon(),
        "dpsgd_epsilon": accounting.epsilon(events=[plan.dpsgd()], delta=plan.delta),
        "evaluation_noise": plan.evaluation_noise,
        "final_evaluation_noise": plan.final_evaluation_noise,
        "weight_noise": plan.weight_noise,
        "project_spent_before": plan.prior_epsilon,
    }


def what_if_table(*, site: str, plan: SitePlan, noise_multipliers: tuple[float, ...]) -> pd.DataFrame:
    """Epsilon of DP-SGD alone against noise and rounds, at the smallest site's sampling."""
    rounds = plan.rounds
    with _quiet_rdp():
        what_if = plan_dpsgd(
            noise_multipliers=list(noise_multipliers),
            rounds=sorted({1, max(1, rounds // 2), rounds, 2 * rounds}),
            steps_per_round=plan.steps_per_round,
            sampling_rate=plan.sampling_rate,
            delta=plan.delta,
        )
    what_if.insert(0, "site", site)
    return what_if


@contextmanager
def _quiet_rdp():
    """dp_accounting's RDP cross-check logs a warning per order it drops at large
    sampling rates; the PLD figure is the one reported."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def ledger_spent(config) -> float:
    with open_site_ledger(config) as ledger:
        return ledger.spent(dataset=config.dataset)


# --- planning where the sites are elsewhere: from public parameters and noisy counts ---

UNKNOWN_AT_THE_SITE = float("nan")  # a site's cap and its dataset's totals: only its ledger knows


def counts_basis(*, source: str, policy: NodePolicy) -> str:
    low, high = policy.noise_multiplier_range
    return (
        f"An ESTIMATE from noisy counts, not a promise. Each site's rows are its differentially private count "
        f"({source}), less the held-out share a node keeps by default ({policy.holdout_fraction:.0%}); its policy "
        f"is taken as `workbench node init`'s defaults (evaluation share {policy.evaluation_share:g}, noise "
        f"multiplier from {low:g} to {high:g}); the project's earlier spending is what the sites' signed receipts "
        "seen here say. Each site calibrates its own noise from its exact rows and its own policy when the study "
        "starts, and refuses what does not fit its cap or the project's allocation before touching its data; "
        "neither is known here (NaN)."
    )


def estimated_train_rows(*, count: float, holdout_fraction: float) -> int | None:
    """Training rows of a site whose table holds about ``count`` rows (its split's arithmetic,
    ``federation.training.features.split_indices``); None without a usable count."""
    if not math.isfinite(count) or count < 2:
        return None
    rows = int(round(count))
    return rows - max(1, int(round(rows * holdout_fraction)))


def project_events(*, receipts: list[dict[str, Any]], site: str, project: str) -> list[dpa.DpEvent]:
    """What ``project`` composed at ``site``, from the site's signed commit receipts, in the
    ledger's own canonical form (one self-composed event per mechanism)."""
    counts: Counter[str] = Counter()
    for receipt in receipts:
        if receipt.get("kind") == "commit" and receipt.get("site_id") == site and receipt.get("project") == project:
            counts.update(base_counts(event_from_json(str(receipt["mechanism"]))))
    return events_from_counts(counts)


def site_delta(*, receipts: list[dict[str, Any]], site: str, default: float) -> float:
    """The site's dataset delta as its latest receipt states it (``default`` before any)."""
    deltas = [float(r["delta"]) for r in receipts if r.get("site_id") == site and r.get("delta") is not None]
    return deltas[-1] if deltas else default


def plan_from_counts(
    *,
    sizes: Mapping[str, float],
    source: str,
    receipts: list[dict[str, Any]],
    target_epsilon: float,
    rounds: int,
    project: str = "plan",
    noise_multipliers: tuple[float, ...] = (0.8, 1.0, 1.5, 2.0, 3.0),
    **hyperparameters: Any,
) -> TrainingPlan:
    """Each site's plan from public parameters and its noisy row count (``sizes``: site ->
    rows), with the project's history from ``receipts``: the sites' own calibration
    (``federation.site.plan``) on those facts. What a connected workbench plans with."""
    spec = TrainingSpec(project=project, target_epsilon=target_epsilon, rounds=rounds, **hyperparameters)
    policy = NodePolicy(allowed_tasks=DEFAULT_ALLOWED_TASKS)  # the defaults of `workbench node init`
    rows: list[dict[str, Any]] = []
    smallest: tuple[str, SitePlan] | None = None
    for site, count in sorted(sizes.items()):
        n_train = estimated_train_rows(count=float(count), holdout_fraction=policy.holdout_fraction)
        if n_train is None:
            rows.append(_no_size_row(site=site, count=count))
            continue
        prior = tuple(project_events(receipts=receipts, site=site, project=project))
        facts = SiteFacts(
            site=site,
            dataset="",
            n_train=n_train,
            policy=policy,
            delta=site_delta(receipts=receipts, site=site, default=spec.delta),
            prior=prior,
            dataset_events=(),
            cap=None,
            allocation=None,
            used_names=(),
        )
        plan = site_run_plan(facts=facts, spec=spec, prior=prior)  # ProjectBudgetSpent: no room left
        total_after = accounting.epsilon(events=[*prior, *plan.planned_events()], delta=plan.delta)
        rows.append(
            {
                "site": site,
                **plan_columns(plan),
                "project_total_after": total_after,
                "dataset_spent_before": UNKNOWN_AT_THE_SITE,
                "dataset_total_after": UNKNOWN_AT_THE_SITE,
                "cap": UNKNOWN_AT_THE_SITE,
                "cap_remaining_after": UNKNOWN_AT_THE_SITE,
                "fits": total_after <= target_epsilon + 1e-9,
                "binding": (
                    f"estimated from a noisy count of {float(count):,.0f} rows: the project's target fits; the site "
                    "checks its cap and the project's allocation when the study starts" + minimum_noise_note(plan)
                ),
            }
        )
        if smallest is None or n_train < smallest[1].n_train:
            smallest = (site, plan)
    if smallest is None:
        raise PlanWithoutSizes(
            f"no site has a usable noisy count to plan from ({source}: {dict(sizes)}); a plan needs each site's "
            "size. Fix: describe() again with a larger epsilon, or pass sizes={'SITE': ROWS} from a source you trust."
        )
    return TrainingPlan(
        spec=spec,
        per_site=pd.DataFrame(rows),
        what_if=what_if_table(site=smallest[0], plan=smallest[1], noise_multipliers=noise_multipliers),
        basis=counts_basis(source=source, policy=policy),
    )


class PlanWithoutSizes(BadInput, ValueError):
    """A plan from counts was asked for without a usable count (the message says how to get one)."""


def _no_size_row(*, site: str, count: float) -> dict[str, Any]:
    nan = float("nan")
    return {
        "site": site,
        **dict.fromkeys(PLAN_COLUMNS, nan),
        "fits": False,
        "binding": (
            f"no usable noisy count ({count!r}: suppressed, refused or too small), so nothing can be estimated; "
            "the site still plans for itself when the study starts"
        ),
    }


PLAN_COLUMNS = (
    "train_rows",
    "sampling_rate",
    "steps_per_round",
    "noise_multiplier",
    "evaluation_share",
    "evaluation_epsilon",
    "dpsgd_epsilon",
    "evaluation_noise",
    "final_evaluation_noise",
    "weight_noise",
    "project_spent_before",
    "project_total_after",
    "dataset_spent_before",
    "dataset_total_after",
    "cap",
    "cap_remaining_after",
)
