"""python -m benchmarks.heart_disease.run [--data FOLDER] [--quick] [--out benchmarks/heart_disease/RESULTS.md]

Fed-Heart-Disease (the four UCI hospitals) under FLamby's protocol: pooled,
local-only and federated non-private training, then DP-FedAvg at epsilon 0.5-8 per
hospital through Flower with the sites' ledgers; every row beside the majority-label
baseline and FLamby's published figures.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from benchmarks.heart_disease.data import (
    DEFAULT_FOLDER,
    HeartDataMissing,
    load_centres,
    majority_baseline,
    write_site_folder,
)
from benchmarks.heart_disease.flower_runs import SITE_CAP, FlowerStudy, run_flower_studies, simulated_sites
from benchmarks.heart_disease.report import Row, write_results
from benchmarks.heart_disease.search import DP_GRID, NONPRIVATE_GRID, QUICK_GRID, choose, grid, rank
from benchmarks.heart_disease.store import save_run
from benchmarks.heart_disease.training import per_centre_metrics, train_federated, train_local, train_pooled
from benchmarks.heart_disease.tuning_rows import (
    CHARGED_CANDIDATES,
    QUICK_CANDIDATES,
    ChargedSearchDoesNotFit,
    composed_spend,
    facts_of,
    plan_search,
    synthetic_centres,
    write_tuning_folder,
)

DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
FULL = {
    "seeds": 5,
    "folds": 3,
    "epsilons": EPSILONS,
    "nonprivate": NONPRIVATE_GRID,
    "dp": DP_GRID,
    "charged": CHARGED_CANDIDATES,
}
QUICK = {
    "seeds": 1,
    "folds": 1,
    "epsilons": (1.0,),
    "nonprivate": QUICK_GRID,
    "dp": QUICK_GRID,
    "charged": QUICK_CANDIDATES,
}
UNCHARGED = "DP-FedAvg + site intercept, eps {eps:g}, tuning not charged"
SYNTHETIC = "DP, tuned on synthetic hospitals (free), eps {eps:g}"
CHARGED = "DP, tuned with every candidate charged, eps {eps:g}"
TWO_STAGE = "DP, two-stage: synthetic search keeps 2, both charged, eps {eps:g}"
TWO_STAGE_KEEP = 2  # candidates the free synthetic search passes on to the charged one
# nonprivate: pooled, local, FedAvg rows; uncharged (c), synthetic (a), charged (b): the DP families
FAMILIES = ("nonprivate", "uncharged", "synthetic", "charged", "two-stage")
FAMILY_OF = {"": "uncharged", "synth-": "synthetic", "tuned-": "charged", "tuned2-": "two-stage"}


def _in_process_row(*, name, method, trainer, choice, centres, seeds, **train_args) -> Row:
    runs = [
        per_centre_metrics(models=trainer(centres=centres, hp=choice.hp, seed=s, **train_args), centres=centres)
        for s in range(seeds)
    ]
    return Row.from_runs(name=name, method=method, path="in-process", runs=runs, choice=choice)


def run(
    *,
    data: Path,
    out: Path,
    seeds: int,
    folds: int,
    epsilons: tuple[float, ...],
    nonprivate: dict,
    dp: dict,
    charged: tuple = CHARGED_CANDIDATES,
    command: str = "",
    show_progress: bool = True,
    families: tuple[str, ...] = FAMILIES,
    store: Path | None = None,
) -> pd.DataFrame:
    """Run the benchmark, write ``out`` (and a plot beside it); return the table.

    ``families``: which row families run (``FAMILIES``); ``store``: a folder where the
    run's rows are also kept as JSON (``benchmarks.heart_disease.store``), so partial
    runs merge into one report (``benchmarks.heart_disease.merge``).
    """
    unknown = set(families) - set(FAMILIES)
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families!r}")
    started = time.monotonic()
    centres = load_centres(folder=data)
    baseline = majority_baseline(centres=centres)
    rows = [Row.baseline(baseline)]
    search = dict(centres=centres, folds=folds, show_progress=show_progress)
    plain = grid(**nonprivate)
    with_offset = [replace(hp, site_offset=True) for hp in plain]
    steps = [
        ("pooled", "all training rows in one place, plain SGD", train_pooled, plain, {}),
        ("local only", "each centre alone, its own model", train_local, plain, {}),
        ("FedAvg", "federated, shared model only (FLamby's setting)", train_federated, plain, {}),
        ("FedAvg + site intercept", "federated, each site keeps its own intercept", train_federated, with_offset, {}),
    ]
    if "nonprivate" not in families:
        steps = []
    for name, method, trainer, candidates, args in tqdm(
        steps, desc="heart-disease non-private", disable=not show_progress
    ):
        choice = choose(trainer=trainer, candidates=candidates, label=name, **search, **args)
        rows.append(
            _in_process_row(
                name=name, method=method, trainer=trainer, choice=choice, centres=centres, seeds=seeds, **args
            )
        )

    dp_candidates = [replace(hp, site_offset=True) for hp in grid(**dp)]
    studies = []
    choices, synthetic_choices, shortlist = {}, {}, {}
    synthetic = synthetic_centres(seed=0)
    synthetic_search = dict(centres=synthetic, folds=folds, show_progress=show_progress)
    for epsilon in tqdm(epsilons, desc="heart-disease DP search", disable=not show_progress):
        if "uncharged" in families:
            # (c) the search on the hospitals' own training rows, not charged (as before)
            choices[epsilon] = choose(
                trainer=train_federated, candidates=dp_candidates, label=f"DP eps {epsilon}", epsilon=epsilon, **search
            )
            studies += [FlowerStudy(epsilon=epsilon, seed=s, hp=choices[epsilon].hp) for s in range(seeds)]
        if "synthetic" in families or "two-stage" in families:
            # (a) the same search on synthetic hospitals drawn from the public dictionary: free
            ranked = rank(
                trainer=train_federated,
                candidates=dp_candidates,
                label=f"synthetic, DP eps {epsilon}",
                epsilon=epsilon,
                **synthetic_search,
            )
            synthetic_choices[epsilon] = ranked[0]
            # (d) its best few, passed on to a charged search (two-stage; never test rows)
            shortlist[epsilon] = tuple(c.hp for c in ranked[:TWO_STAGE_KEEP])
        if "synthetic" in families:
            studies += [
                FlowerStudy(epsilon=epsilon, seed=s, hp=synthetic_choices[epsilon].hp, family="synth-")
                for s in range(seeds)
            ]
    # The charged searches: (b) the fixed candidates, (d) the synthetic search's shortlist.
    searches = {}
    if "charged" in families:
        searches["tuned-"] = {e: tuple(charged) for e in epsilons}
    if "two-stage" in families:
        searches["tuned2-"] = dict(shortlist)
    refused: dict[float, str] = {}  # the charged search's epsilons whose plan does not fit
    refused_two: dict[float, str] = {}
    with tempfile.TemporaryDirectory(prefix="heart-bench-") as tmp:
        folder = write_site_folder(centres=centres, out=Path(tmp) / "sites")
        tuning_folder = write_tuning_folder(centres=centres, out=Path(tmp) / "tuning-sites")
        state = Path(tmp) / "state"
        names = list(centres)
        # Every candidate charged: plan the split, run the candidates on the hospitals'
        # tuning view (validation rows held out), choose by the noisy scores, train again.
        tuning_sites = simulated_sites(site_folder=tuning_folder, state_root=state, names=names, studies=[])
        final_sites = simulated_sites(site_folder=folder, state_root=state, names=names, studies=[])
        tuning_facts = facts_of(sites=tuning_sites, cap=SITE_CAP)
        final_facts = facts_of(sites=final_sites, cap=SITE_CAP)
        all_plans: dict[tuple[str, float], object] = {}
        for fam, by_eps in searches.items():
            for e in tqdm(by_eps, desc=f"heart-disease {fam} search plans", disable=not show_progress):
                try:
                    all_plans[fam, e] = plan_search(
                        tuning_facts=tuning_facts,
                        final_facts=final_facts,
                        candidates=by_eps[e],
                        epsilon=e,
                        project=None if fam == "tuned-" else f"heart-two-e{str(e).replace('.', 'p')}",
                    )
                except ChargedSearchDoesNotFit as err:  # refused before anything runs: reported, not run
                    (refused if fam == "tuned-" else refused_two)[e] = str(err)
        plans = {e: p for (fam, e), p in all_plans.items() if fam == "tuned-"}
        two_stage_plans = {e: p for (fam, e), p in all_plans.items() if fam == "tuned2-"}
        candidate_studies = [
            FlowerStudy(
                epsilon=e,
                seed=s,
                hp=hp,
                family=fam,
                project=f"{all_plans[fam, e].project}-s{s}-tune{i:02d}",
                target=all_plans[fam, e].candidate_epsilon,
            )
            for (fam, e) in all_plans
            for s in range(seeds)
            for i, hp in enumerate(searches[fam][e], start=1)
        ]
        tried = []
        if candidate_studies:
            tried, _ = run_flower_studies(
                site_folder=tuning_folder,
                state_root=state,
                names=names,
                studies=candidate_studies,
                show_progress=show_progress,
                desc="heart-disease charged candidates (Flower)",
            )
        for fam, e in all_plans:
            for s in range(seeds):
                mine = [r for r in tried if r.study.family == fam and r.study.epsilon == e and r.study.seed == s]
                studies.append(
                    FlowerStudy(
                        epsilon=e,
                        seed=s,
                        hp=max(mine, key=lambda r: r.noisy_accuracy).study.hp,
                        family=fam,
                        project=f"{all_plans[fam, e].project}-s{s}",
                        target=all_plans[fam, e].final_target,
                    )
                )
        results = []
        if studies:
            results, _ = run_flower_studies(
                site_folder=folder, state_root=state, names=names, studies=studies, show_progress=show_progress
            )
        search_spend = {
            (fam, e, s): composed_spend(
                sites=final_sites,
                projects=[f"{all_plans[fam, e].project}-s{s}"]
                + [f"{all_plans[fam, e].project}-s{s}-tune{i:02d}" for i in range(1, len(searches[fam][e]) + 1)],
            )
            for (fam, e) in all_plans
            for s in range(seeds)
        }
    for epsilon in epsilons:
        for family, label, choice in (
            ("", UNCHARGED, choices.get(epsilon)),
            ("synth-", SYNTHETIC, synthetic_choices.get(epsilon)),
            ("tuned-", CHARGED, None),
            ("tuned2-", TWO_STAGE, None),
        ):
            if FAMILY_OF[family] not in families:
                continue
            if family in ("tuned-", "tuned2-") and (family, epsilon) not in all_plans:
                continue
            mine = [r for r in results if r.study.epsilon == epsilon and r.study.family == family]
            incomplete = [r for r in mine if r.rounds_completed != r.study.hp.rounds]
            if incomplete:
                raise RuntimeError(f"DP study at epsilon {epsilon} stopped early: {incomplete[0].stopped_reason}")
            if family in ("tuned-", "tuned2-"):
                spent = [max(search_spend[family, epsilon, r.study.seed].values()) for r in mine]
            else:
                spent = [max(r.epsilon_spent.values()) for r in mine]
            rows.append(
                Row.from_runs(
                    name=label.format(eps=epsilon),
                    method="Flower simulation, site ledgers",
                    path="Flower",
                    runs=[r.per_centre for r in mine],
                    choice=choice,
                    target_epsilon=epsilon,
                    spent=spent,
                    family=family or "uncharged",
                    chosen=[r.study.hp.label() for r in mine] if family in ("tuned-", "tuned2-") else [],
                )
            )
    table = pd.DataFrame([r.as_dict() for r in rows])
    if store is not None:
        saved = save_run(
            store=store,
            rows=rows,
            command=command,
            seconds=time.monotonic() - started,
            plans=plans,
            families=families,
            refused=refused,
            two_stage_plans=two_stage_plans,
            refused_two_stage=refused_two,
            shortlist={e: [hp.label() for hp in shortlist[e]] for e in searches.get("tuned2-", {})},
        )
        print(f"rows stored in {saved}", file=sys.stderr)
    write_results(
        out=out,
        table=table,
        rows=rows,
        baseline=baseline,
        seeds=seeds,
        folds=folds,
        nonprivate_grid=nonprivate,
        dp_grid=dp,
        command=command,
        seconds=time.monotonic() - started,
        charged=charged,
        plans=plans,
        refused=refused,
        two_stage={
            "plans": two_stage_plans,
            "refused": refused_two,
            "shortlist": {e: shortlist[e] for e in searches.get("tuned2-", {})},
        },
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.heart_disease.run", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_FOLDER, help="folder of the four UCI processed.*.data files"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where RESULTS.md goes (the plot beside it)")
    parser.add_argument("--quick", action="store_true", help="one seed, one epsilon, a one-point grid (for tests)")
    parser.add_argument("--epsilons", type=str, default="", help="comma-separated totals to run (default: all)")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per row (default: 5, --quick 1)")
    parser.add_argument(
        "--families",
        type=str,
        default=",".join(FAMILIES),
        help=f"comma-separated row families to run, of {','.join(FAMILIES)} (default: all)",
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="also keep this run's rows as JSON in this folder (for merge)"
    )
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.epsilons:
        sizes["epsilons"] = tuple(float(e) for e in args.epsilons.split(","))
    if args.seeds:
        sizes["seeds"] = args.seeds
    command = "python -m benchmarks.heart_disease.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        table = run(
            data=args.data,
            out=args.out,
            command=command.strip(),
            families=tuple(f.strip() for f in args.families.split(",") if f.strip()),
            store=args.store,
            **sizes,
        )
    except HeartDataMissing as err:
        print(f"heart-disease benchmark skipped: {err}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[["row", "accuracy", "accuracy_sd", "auc", "epsilon_spent", "vs_majority"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
