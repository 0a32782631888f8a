"""The DP rows through the real workbench path: Flower's simulation engine, the
sites' ClientApp (policy gate, ledger reserve/commit, DP-SGD, receipts), and epsilon
read back from each hospital's own ledger.

Starting the simulation engine costs 20-30 s on this machine, so one simulation runs
every study in turn: the ServerApp calls the coordinator's study loop
(``run_training``) once per (epsilon, seed), each under its own project name and
run id, so each study's spend is its own line in every ledger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from tqdm.auto import tqdm

from benchmarks.heart_disease.data import SPLIT_COLUMN, encoder
from benchmarks.heart_disease.training import DELTA, Hyper
from federation.coordinator.server_app import initial_arrays
from federation.coordinator.study_loop import StudyOutcome, run_training
from federation.engines.simulation import run_on_simulation
from federation.protocol.spec import TrainingSpec
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.site_config import SiteConfig
from federation.site.site_parameters import with_site_parameters
from federation.training.evaluation import binary_metrics, predict_proba
from federation.training.models import build_model
from privacy_budgets import Ledger

ENGINE_ATTEMPTS = 3  # fresh engine starts when Ray's own startup times out before any study runs
SITE_CAP = 500.0  # each hospital's lifetime cap, set once: every study's spend fits under it


@dataclass(frozen=True)
class FlowerStudy:
    epsilon: float  # the row's total epsilon per hospital
    seed: int
    hp: Hyper
    # A study inside a charged search: its own ledger project and target (a candidate's
    # share, or the final training's), the row it belongs to named by ``family``.
    family: str = ""
    project: str = ""
    target: float | None = None

    @property
    def budget(self) -> float:
        """What the study's own project is granted (its own target)."""
        return self.epsilon if self.target is None else self.target

    def spec(self) -> TrainingSpec:
        hp = self.hp
        return TrainingSpec(
            project=self.project or f"heart-{self.family}e{str(self.epsilon).replace('.', 'p')}-s{self.seed}",
            target_epsilon=self.budget,
            delta=DELTA,
            rounds=hp.rounds,
            model=hp.model,
            hidden=hp.hidden,
            local_epochs=hp.local_epochs,
            batch_size=hp.batch_size,
            learning_rate=hp.learning_rate,
            momentum=hp.momentum,
            max_grad_norm=hp.max_grad_norm,
            strategy="fedavg",
            init_seed=self.seed,
            engine="vectorized",
            site_offset=hp.site_offset,
        )


@dataclass(frozen=True)
class FlowerResult:
    study: FlowerStudy
    per_centre: dict[str, dict[str, float]]  # accuracy and AUC from the last round's evaluation
    epsilon_spent: dict[str, float]  # read from each site's ledger
    rounds_completed: int
    stopped_reason: str
    seconds: float
    noisy_accuracy: float = float("nan")  # the sites' pooled noisy evaluation, last round


def simulated_sites(
    *, site_folder: Path, state_root: Path, names: list[str], studies: list[FlowerStudy]
) -> list[SiteConfig]:
    """One workbench site per centre, each with a fresh ledger capped by its (simulated)
    IT, and each study's project allocated its target (as an ethics board would)."""
    sites = []
    for name in names:
        site = SiteConfig(
            site_id=name,
            data_path=site_folder / f"{name}.csv",
            state_dir=state_root / name,
            dictionary_path=site_folder / "data_dictionary.json",
            dataset=name,
            # FLamby's published split, as each hospital's own choice of held-out rows; its
            # smallest test split (Switzerland) holds 16 rows, under the default minimum of 20.
            policy_overrides=(("split_column", SPLIT_COLUMN), ("min_holdout_rows", 10)),
        )
        site.state_dir.mkdir(parents=True, exist_ok=True)
        with Ledger.open(site.ledger_path, site_id=name) as ledger:
            if ledger.cap(dataset=name) is None:
                ledger.set_cap(
                    dataset=name,
                    epsilon=SITE_CAP,
                    delta=DELTA,
                    actor="benchmark-it",
                    reason="heart-disease benchmark: one cap for all its studies",
                )
            for study in studies:
                ledger.allocate(
                    dataset=name,
                    project=study.spec().project,
                    epsilon=study.budget,
                    actor="benchmark-board",
                    reason="heart-disease benchmark study",
                )
        sites.append(site)
    return sites


def _held_out_metrics(
    *, sites: list[SiteConfig], spec: TrainingSpec, outcome: StudyOutcome, encoder
) -> dict[str, dict[str, float]]:
    """Accuracy and AUC of the final model on each centre's test rows, computed here
    (the benchmark holds every centre's table; the sites sent only noisy counts), with
    each site's own intercept where the study trains one (kept in the site's state)."""
    out = {}
    for site in sites:
        model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
        model.load_state_dict(outcome.arrays.to_torch_state_dict())
        model = with_site_parameters(model=model, site=site, spec=spec)
        arrays = site_arrays(site=site, policy=NodePolicy.default_for(site), encoder=encoder)
        metrics = binary_metrics(y_true=arrays.y_test, proba=predict_proba(model=model, x=arrays.x_test))
        out[site.site_id] = {"accuracy": metrics["accuracy"], "auc": metrics["auc"]}
    return out


def _anything_charged(*, sites: list[SiteConfig], studies: list[FlowerStudy]) -> bool:
    """Whether any study's project holds a ledger entry (reserved or committed) anywhere."""
    for site in sites:
        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            for study in studies:
                if ledger.events(dataset=site.dataset, project=study.spec().project, include_reserved=True):
                    return True
    return False


def run_flower_studies(
    *,
    site_folder: Path,
    state_root: Path,
    names: list[str],
    studies: list[FlowerStudy],
    show_progress: bool = True,
    desc: str = "heart-disease DP studies (Flower)",
) -> tuple[list[FlowerResult], float]:
    """Run ``studies`` one after another in ONE simulation; return results and the
    seconds spent before the first study could start (engine start)."""
    sites = simulated_sites(site_folder=site_folder, state_root=state_root, names=names, studies=studies)
    enc = encoder()
    outcomes: list[tuple[FlowerStudy, StudyOutcome, float]] = []
    errors: list[BaseException] = []
    started = time.monotonic()
    first_round: list[float] = []
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        first_round.append(time.monotonic())
        try:
            for study in tqdm(studies, desc=desc, disable=not show_progress):
                spec = study.spec()
                t0 = time.monotonic()
                outcome = run_training(
                    grid=grid,
                    spec=spec,
                    encoder=enc,
                    n_sites=len(sites),
                    initial_arrays=lambda e, s=spec: initial_arrays(spec=s, encoder=e),
                )
                outcomes.append((study, outcome, time.monotonic() - t0))
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)
            raise

    for attempt in range(1, ENGINE_ATTEMPTS + 1):
        try:
            run_on_simulation(server_app=app, sites=sites)
            break
        except RuntimeError:
            # Ray gives its raylet a fixed 30 s to register; on a loaded machine it can miss
            # that before anything ran. Only then is a fresh start safe (nothing was charged).
            if outcomes or attempt == ENGINE_ATTEMPTS or _anything_charged(sites=sites, studies=studies):
                raise
            first_round.clear()
            print(f"engine start failed before any study ran (attempt {attempt}); starting it again", flush=True)
    if errors:
        raise errors[0]
    results = []
    for study, outcome, seconds in outcomes:
        last = outcome.rounds[-1]
        refused = [r for r in (*last.train, *last.evaluate) if r.status != "ok"]
        if refused:
            raise RuntimeError(
                f"study {study.spec().project}: site {refused[0].site_id} {refused[0].status} "
                f"round {last.round}: {refused[0].reason}"
            )
        per_centre = _held_out_metrics(sites=sites, spec=study.spec(), outcome=outcome, encoder=enc)
        spent = {}
        for site in sites:
            with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
                spent[site.site_id] = ledger.spent(dataset=site.dataset, project=study.spec().project)
        results.append(
            FlowerResult(
                study=study,
                per_centre=per_centre,
                epsilon_spent=spent,
                rounds_completed=outcome.completed_rounds,
                stopped_reason=outcome.stopped_reason,
                seconds=seconds,
                noisy_accuracy=float(last.pooled().get("accuracy", float("nan"))),
            )
        )
    engine_start = (first_round[0] - started) if first_round else float("nan")
    return results, engine_start
