"""Planning a private training before anything is spent.

For each site: the sampling rate and steps its own data give, how its policy splits
the target between DP-SGD and its noisy evaluations (``evaluation_share``; the
evaluations' epsilon on their own and the DP-SGD's on its own, which together compose
to the target), the noise it will calibrate, what its ledger would hold afterwards,
and whether the training fits its cap. Beside it, a what-if table of epsilon against
noise and rounds (DP-SGD alone).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from federation.protocol.spec import TrainingSpec
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.ledger_keys import open_site_ledger
from federation.site.plan import calibrate_plan
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder
from privacy_budgets import accounting, plan_dpsgd
from privacy_budgets.mechanisms import composed_event


@dataclass
class TrainingPlan:
    """Projected privacy per site for a training spec; ``what_if`` varies noise and rounds."""

    spec: TrainingSpec
    per_site: pd.DataFrame
    what_if: pd.DataFrame

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
        return f"TrainingPlan({self.spec.rounds} rounds, target epsilon {self.spec.target_epsilon:g}: {verdict})\n{self.per_site.to_string(index=False)}"

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
            + self.per_site.to_html(index=False, float_format=lambda v: f"{v:.4g}")
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
    smallest: dict[str, Any] | None = None
    for config in sites:
        site = config.site_id
        policy = NodePolicy.default_for(config)
        # In a simulation the rows are here to count; a real site states them in its plan.
        n_train = len(site_arrays(site=config, policy=policy, encoder=encoder).y_train)
        with open_site_ledger(config) as ledger:
            delta = ledger.dataset_delta(dataset=config.dataset)
            # A project whose earlier spending leaves no room raises PlanRefused here: one
            # paragraph with its own numbers, the same words a site would send. The plan is
            # the site's own calibration (federation/site/plan.py), split as its policy says.
            plan = calibrate_plan(
                ledger=ledger, spec=spec, dataset=config.dataset, n_train=n_train, policy=policy, include_reserved=False
            )
            q, steps, sigma = plan.sampling_rate, plan.steps_per_round, plan.noise_multiplier
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
            if plan.at_minimum_noise:
                binding = (
                    f"{binding}; the least noise the site allows (noise multiplier {sigma:g}) already keeps the "
                    "project under its target: that noise is used, and the study spends less"
                )
            cap = ledger.cap(dataset=config.dataset)
        rows.append(
            {
                "site": site,
                "train_rows": n_train,
                "sampling_rate": q,
                "steps_per_round": steps,
                "noise_multiplier": sigma,
                "evaluation_share": plan.evaluation_share,
                "evaluation_epsilon": plan.release_epsilon(),
                "dpsgd_epsilon": accounting.epsilon(events=[plan.dpsgd()], delta=delta),
                "evaluation_noise": plan.evaluation_noise,
                "final_evaluation_noise": plan.final_evaluation_noise,
                "weight_noise": plan.weight_noise,
                "project_spent_before": plan.prior_epsilon,
                "project_total_after": cost.project_total_after,
                "dataset_spent_before": ledger_spent(config),
                "dataset_total_after": dataset_after,
                "cap": cap if cap is not None else float("nan"),
                "cap_remaining_after": remaining,
                "fits": fits,
                "binding": binding,
            }
        )
        if smallest is None or n_train < smallest["n"]:
            smallest = {"site": site, "n": n_train, "q": q, "steps": steps, "delta": delta}
    with _quiet_rdp():
        what_if = plan_dpsgd(
            noise_multipliers=list(noise_multipliers),
            rounds=sorted({1, max(1, rounds // 2), rounds, 2 * rounds}),
            steps_per_round=smallest["steps"],
            sampling_rate=smallest["q"],
            delta=smallest["delta"],
        )
    what_if.insert(0, "site", smallest["site"])
    return TrainingPlan(spec=spec, per_site=pd.DataFrame(rows), what_if=what_if)


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
