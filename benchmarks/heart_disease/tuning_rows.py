"""The two honest ways to choose the DP rows' hyperparameters.

(a) **Free: tuned on synthetic hospitals.** Four hospitals of FLamby's published sizes
drawn from the public UCI data dictionary alone (``datasets_synthetic.from_dictionary``)
with an outcome from a stated public prior (the directions of risk the UCI
documentation and cardiology textbooks give: asymptomatic chest pain, exercise angina,
ST depression, male sex and age raise it, a high maximum heart rate lowers it; the
coefficients are chosen, never fitted). The DP search runs on them; no hospital's row
is read, so it costs nothing, and the chosen configuration trains once on the real
hospitals at the row's whole epsilon.

(b) **Charged: every candidate pays.** The split of the row's total among the
candidates and a final training is ``workbench.tuning_plan``'s (the sites' own plans,
composed in PLD). Each hospital holds out validation rows from its training rows
while tuning (FLamby's test rows are never in a candidate's view), every candidate is
a Flower study charged to the hospital's one ledger under its own project, the best
is chosen from the sites' pooled noisy validation accuracy (free post-processing),
and the chosen configuration is trained again on all training rows at its planned
share. The row's epsilon is every candidate project and the final project composed,
read back from the ledgers.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from benchmarks.heart_disease.data import FLAMBY_DICTIONARY, SPLIT_COLUMN, Centre, encoder, flamby_split
from benchmarks.heart_disease.training import DELTA, Hyper
from datasets_synthetic.from_dictionary import hospitals_from_dictionary
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger, accounting
from workbench.tuning_plan import SiteFacts, TuningPlan, normalise_candidates, plan_from_facts

# FLamby's published centre sizes (du Terrail et al. 2022, Table 1): public.
FLAMBY_SIZES = {"cleveland": 303, "hungarian": 261, "switzerland": 46, "va": 130}
# The public prior of (a): logit scale, numeric columns scaled to [-1, 1] over their range.
PUBLIC_PRIOR = {
    "age": 1.0,
    "sex": 1.0,
    "cp=4": 1.8,
    "exang": 1.2,
    "oldpeak": 2.0,
    "thalach": -1.5,
    "trestbps": 0.3,
    "chol": 0.3,
    "fbs": 0.2,
}
PRIOR_INTERCEPT = -1.6  # about half the synthetic patients with the disease, as in UCI's documentation

# (b)'s candidates: the DP grid's most chosen corner and its neighbours.
CHARGED_CANDIDATES = (
    Hyper(learning_rate=1.0, batch_size=256, rounds=20, max_grad_norm=1.0, site_offset=True),
    Hyper(learning_rate=1.0, batch_size=256, rounds=20, max_grad_norm=0.5, site_offset=True),
    Hyper(learning_rate=0.3, batch_size=256, rounds=20, max_grad_norm=1.0, site_offset=True),
    Hyper(learning_rate=1.0, batch_size=64, rounds=10, max_grad_norm=0.5, site_offset=True),
)
QUICK_CANDIDATES = (
    Hyper(learning_rate=1.0, batch_size=64, rounds=3, site_offset=True),
    Hyper(learning_rate=0.3, batch_size=64, rounds=3, site_offset=True),
)
FINAL_SHARE = 0.5


class ChargedSearchDoesNotFit(RuntimeError):
    """(b)'s plan at some total epsilon cannot fit: refused before anything runs."""


def synthetic_centres(*, seed: int = 0) -> dict[str, Centre]:
    """(a)'s hospitals: the public dictionary, FLamby's sizes, the public prior."""
    frames = hospitals_from_dictionary(
        dictionary=FLAMBY_DICTIONARY,
        sizes=FLAMBY_SIZES,
        target="heart_disease",
        coefficients=PUBLIC_PRIOR,
        intercept=PRIOR_INTERCEPT,
        seed=seed,
        derived={"num": "heart_disease"},
    )
    enc = encoder()
    centres = {}
    for name, frame in frames.items():
        y = enc.labels(frame)
        train, test = flamby_split(y=y)
        x = enc.encode(frame)
        centres[name] = Centre(
            name=name, frame=frame, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test]
        )
    return centres


def write_tuning_folder(*, centres: dict[str, Centre], out: Path) -> Path:
    """Each hospital's TRAINING rows only, its split column now marking a validation
    third (stratified, like ``validation_folds``): the view a hospital gives its
    candidates while tuning. FLamby's test rows are not in it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, c in centres.items():
        frame = c.frame[c.frame[SPLIT_COLUMN] == "train"].reset_index(drop=True).copy()
        y = c.y_train
        stratify = y if min(np.bincount(y.astype(int), minlength=2)) > 2 else None
        _, val = train_test_split(np.arange(len(y)), test_size=0.34, random_state=1000, stratify=stratify)
        split = np.full(len(frame), "train", dtype=object)
        split[val] = "test"
        frame[SPLIT_COLUMN] = split
        frame.to_csv(out / f"{name}.csv", index=False, lineterminator="\n")
    (out / "data_dictionary.json").write_text(FLAMBY_DICTIONARY.to_json_text())
    return out


def facts_of(*, sites: list[SiteConfig], cap: float) -> list[SiteFacts]:
    """What the plan needs of each benchmark hospital (its rows in this view, its policy);
    each search runs under fresh projects, so no history."""
    enc = encoder()
    out = []
    for site in sites:
        policy = NodePolicy.default_for(site)
        n_train = len(site_arrays(site=site, policy=policy, encoder=enc).y_train)
        out.append(
            SiteFacts(
                site=site.site_id,
                dataset=site.dataset,
                n_train=n_train,
                policy=policy,
                delta=DELTA,
                prior=(),
                dataset_events=(),
                cap=cap,
                allocation=None,
                used_names=(),
            )
        )
    return out


def _spec_fields(hp: Hyper) -> dict:
    """A candidate as the Flower studies run it (``FlowerStudy.spec``): FedAvg, vectorised engine."""
    return {**asdict(hp), "strategy": "fedavg", "engine": "vectorized"}


def plan_search(
    *,
    tuning_facts: list[SiteFacts],
    final_facts: list[SiteFacts],
    candidates: tuple[Hyper, ...],
    epsilon: float,
    project: str | None = None,
) -> TuningPlan:
    """(b)'s split of ``epsilon`` per hospital, the same arithmetic as ``wb.plan_tuning``."""
    hps = normalise_candidates(
        candidates=[_spec_fields(hp) for hp in candidates], rounds=candidates[0].rounds, common={}, delta=DELTA
    )
    plan = plan_from_facts(
        facts=tuning_facts,
        final_facts=final_facts,
        hps=hps,
        target_epsilon=epsilon,
        project=project or f"heart-tuned-e{str(epsilon).replace('.', 'p')}",
        final_share=FINAL_SHARE,
        delta=DELTA,
    )
    if not plan.fits:
        raise ChargedSearchDoesNotFit(
            f"the charged search at epsilon {epsilon:g} does not fit: {plan.reason or plan.per_site}"
        )
    return plan


def composed_spend(*, sites: list[SiteConfig], projects: list[str]) -> dict[str, float]:
    """Per hospital: the given projects' committed events composed (its one ledger)."""
    out = {}
    for site in sites:
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            events = []
            for project in projects:
                events += ledger.events(dataset=site.dataset, project=project, include_reserved=False)
        out[site.site_id] = accounting.epsilon(events=events, delta=DELTA)
    return out
