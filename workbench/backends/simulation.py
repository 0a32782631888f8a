"""Hospitals simulated on this machine, on Flower's simulation engine.

Every site's file, ledger and policy is here, so this back end offers everything:
planning from the exact row counts, the ethics board's reports, exact held-out metrics.
A simulated ethics board (real keys, quorum 2 of 3) grants and approves what a study
needs; a simulated researcher (a real key) signs every request.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm

from datasets_synthetic import generate_hospitals, write_hospitals
from federation.data.dictionary import DataDictionary
from federation.data.errors import DataDictionaryError
from federation.data.loader import load_sites, site_files
from federation.data.unranged import UnrangedSchema, infer_schema_without_ranges
from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger
from privacy_budgets.proposals import allocation_action, approval_action, cap_action
from privacy_budgets.simulated_board import SimulatedBoard
from workbench import settings
from workbench.backends.base import (
    ASK,
    BUDGET,
    LEDGERS,
    PLAN_TRAINING,
    QUERY_COST,
    SITE_DATA,
    TRAIN,
    TUNING,
    RunOptions,
    TrainingRun,
)
from workbench.burn_down import budget_history
from workbench.errors import as_workbench_errors
from workbench.researcher import SimulatedResearcher

if TYPE_CHECKING:
    from federation.analytics.query import Query
    from federation.coordinator.analytics import SiteQueryReply
    from federation.coordinator.range_phase import RangeFinding
    from federation.protocol.authorization import Authorization
    from federation.protocol.query_request import QueryRequest
    from federation.protocol.spec import TrainingSpec
    from federation.training.features import FeatureEncoder
    from privacy_budgets.signatures import Signer
    from workbench.progress import ProgressObserver

SIMULATED_SITE_IT = "site IT (simulated)"
SIMULATED_ETHICS_BOARD = "ethics board (simulated)"


class SimulationBackend:
    """Every site's configuration and ledger on this machine; studies on the simulation engine."""

    capabilities = frozenset({TRAIN, ASK, QUERY_COST, BUDGET, PLAN_TRAINING, LEDGERS, SITE_DATA, TUNING})

    def __init__(
        self,
        *,
        sites: list[SiteConfig],
        dictionary: DataDictionary | None,
        workdir: Path,
        schema: UnrangedSchema | None = None,
        board: SimulatedBoard | None = None,
        researcher: SimulatedResearcher | None = None,
    ) -> None:
        self._sites = sites
        self.dictionary = dictionary
        self.schema = schema
        self.workdir = workdir
        self.board = board
        self.researcher = researcher

    @classmethod
    def create(
        cls,
        *,
        data: str | Path | None,
        sites: int,
        rows: int,
        seed: int,
        workdir: str | Path,
        site_cap: float,
        delta: float,
        min_cell_size: int | dict[str, int] | None,
        true_count_floor: int | dict[str, int] | None,
        site_policy: dict[str, Any] | None,
    ) -> SimulationBackend:
        """The folders, ledgers, board and researcher of ``Workbench.simulate`` (see there)."""
        workdir = Path(workdir)
        if data is None:
            data = workdir / "data"
            if not (data / "data_dictionary.json").exists():
                write_hospitals(generate_hospitals(sites=sites, rows=rows, seed=seed), out=data)
        data = Path(data)
        dictionary_path = data / "data_dictionary.json"
        schema = None
        if dictionary_path.exists():
            loaded = load_sites(folder=data)  # validates every file before anything runs
            dictionary = DataDictionary.load(dictionary_path)
            paths = {site_id: s.path for site_id, s in loaded.items()}
        else:
            paths = {p.stem: p for p in site_files(folder=data)}
            schema = infer_schema_without_ranges(path=next(iter(paths.values())))
            dictionary = None
            text = [c.name for c in schema.columns if c.kind == "categorical"]
            if text:
                raise DataDictionaryError(
                    f"{data} has no data_dictionary.json, and column(s) {', '.join(text)} hold text: "
                    "their categories must come from a data dictionary (DP range finding covers "
                    "numeric columns only). Write one with `workbench data dictionary` as a start."
                )
        configs = [
            SiteConfig(
                site_id=site_id,
                data_path=path,
                state_dir=workdir / "sites" / site_id,
                dictionary_path=dictionary_path,
                min_cell_size=_per_site(min_cell_size, site_id),
                true_count_floor=_per_site(true_count_floor, site_id),
                policy_overrides=tuple({"require_signed_requests": True, **(site_policy or {})}.items()),
            )
            for site_id, path in sorted(paths.items())
        ]
        _check_disclosure_rules(configs)
        board = SimulatedBoard.create(workdir / "board")
        for site in configs:
            site.state_dir.mkdir(parents=True, exist_ok=True)
            with open_site_ledger(site) as ledger:
                board.establish(ledger)
                if ledger.cap(dataset=site.dataset) is None:
                    board.decide(
                        ledger,
                        action=cap_action(dataset=site.dataset, epsilon=site_cap, delta=delta),
                        reason="lifetime cap of a simulated hospital",
                        proposed_by=SIMULATED_SITE_IT,
                    )
        researcher = SimulatedResearcher.create(workdir / "researcher")
        return cls(
            sites=configs, dictionary=dictionary, workdir=workdir, schema=schema, board=board, researcher=researcher
        )

    # --- the protocol ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"a simulation of {len(self._sites)} hospitals on this machine ({self.workdir})"

    @property
    def signer(self) -> Signer | None:
        return None if self.researcher is None else self.researcher.signer()

    def sites(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"site": s.site_id, "dataset": s.dataset, "data": str(s.data_path), "ledger": str(s.ledger_path)}
                for s in self._sites
            ],
            columns=["site", "dataset", "data", "ledger"],
        )

    def prepare_project(self, *, project: str, epsilon: float | None, reason: str) -> None:
        """What the simulated ethics board does before a request: grant ``project``
        ``epsilon`` where it has no allocation yet (an existing one is left as it is; None
        grants nothing), then approve the simulated researcher's key for it."""
        if epsilon is not None:
            for s in self._sites:
                with open_site_ledger(s) as ledger:
                    missing = ledger.allocation(dataset=s.dataset, project=project) is None
                if missing:
                    self.decide(
                        site=s,
                        action=allocation_action(dataset=s.dataset, project=project, epsilon=epsilon),
                        reason=reason,
                        proposed_by=SIMULATED_ETHICS_BOARD,
                    )
        self._approve_where_missing(project=project)

    def run_training(
        self,
        *,
        spec: TrainingSpec,
        encoder: FeatureEncoder | None,
        range_finding: RangeFinding | None,
        authorization: Authorization | None,
        observer: ProgressObserver,
        options: RunOptions,
        verbose: bool,
    ) -> TrainingRun:
        from federation.engines.simulation import run_simulated_training

        with as_workbench_errors():
            outcome = run_simulated_training(
                sites=self._sites,
                spec=spec,
                encoder=encoder,
                range_finding=range_finding,
                observer=observer,
                verbose=verbose,
                authorization=authorization,
            )
        totals = {}
        for s in self._sites:  # a simulation holds every ledger; a coordinator never does
            with open_site_ledger(s) as ledger:
                totals[s.site_id] = ledger.spent(dataset=s.dataset)
        return TrainingRun(
            state_dict=outcome.arrays.to_torch_state_dict(),
            encoder=outcome.encoder,
            receipts=list(outcome.receipts),
            stopped_reason=outcome.stopped_reason,
            completed_rounds=outcome.completed_rounds,
            study_dictionary=outcome.dictionary,
            dataset_totals=totals,
        )

    def run_local_tuning(self, *, config: dict[str, Any], authorization: Any, verbose: bool) -> list[Any]:
        """One ``tune`` message to every site through its ClientApp (its gate, audit log and
        charged path) on the simulation engine; each site's answer (``SiteTuning``)."""
        from federation.engines.simulation import run_simulated_local_tuning

        with as_workbench_errors():
            return run_simulated_local_tuning(
                sites=self._sites, config=config, authorization=authorization, verbose=verbose
            )

    def run_queries(self, *, requests: list[QueryRequest], verbose: bool, timeout: float) -> list[list[SiteQueryReply]]:
        """Every request in ONE simulation run: the engine's start (about 25 s) is paid once."""
        from federation.engines.analytics_simulation import run_simulated_queries

        bar = tqdm(total=len(requests), desc="queries", unit="query", disable=not settings.progress)
        try:
            box = run_simulated_queries(
                sites=self._sites, requests=requests, verbose=verbose, on_answer=lambda request, replies: bar.update(1)
            )
        finally:
            bar.close()
        return list(box.answers or [])

    def query_costs(self, *, queries: list[Query], project: str, timeout: float) -> pd.DataFrame:
        """Each site's own computation (the function its ``query:cost`` handler runs); the
        ledgers are here, so no engine starts."""
        from workbench.analytics import cost

        return cost(sites=self._sites, queries=queries, project=project)

    def receipts(self) -> list[dict[str, Any]]:
        """The signed receipt of every release in every site's ledger, in each ledger's order
        (as a site signs it for the requester: without the dataset's total)."""
        out: list[dict[str, Any]] = []
        for s in self._sites:
            with open_site_ledger(s) as ledger:
                out += [
                    ledger.receipt(entry, dataset_total=False).to_dict()
                    for entry in ledger.entries(dataset=s.dataset)
                    if entry.kind in ("commit", "uncovered")
                ]
        return out

    def budget(self) -> pd.DataFrame:
        """Every site's ledger status: caps, allocations, spent, remaining."""
        frames = []
        for s in self._sites:
            with open_site_ledger(s) as ledger:
                status = ledger.status()
            status.insert(0, "site", s.site_id)
            frames.append(status)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def budget_history(self) -> pd.DataFrame:
        """Every ledger entry that moved a total or a limit, all sites, in order."""
        return budget_history(sites=self._sites)

    # --- HoldsSites -----------------------------------------------------------------

    def site_configs(self) -> list[SiteConfig]:
        return list(self._sites)

    def decide(self, *, site: SiteConfig, action: dict[str, Any], reason: str, proposed_by: str) -> None:
        """The simulated board's signed decision; one-person in a ledger without a board."""
        with open_site_ledger(site) as ledger:
            if self.board is not None:
                self.board.decide(ledger, action=action, reason=reason, proposed_by=proposed_by)
            else:
                ledger.allocate(
                    dataset=action["dataset"],
                    project=action["project"],
                    epsilon=action["epsilon"],
                    actor=proposed_by,
                    reason=reason,
                )

    def _approve_where_missing(self, *, project: str) -> None:
        """Approve the simulated researcher's key for ``project`` at every site that has
        not (a quorum-signed ``approve`` entry beside the allocation)."""
        if self.researcher is None or self.board is None:
            return
        key = self.researcher.public_key
        for s in self._sites:
            with Ledger.open(s.ledger_path, site_id=s.site_id) as ledger:
                approval = ledger.approval(dataset=s.dataset, project=project)
                listed = [] if approval is None else list(approval.researchers)
                if key.openssh(comment=False) in {r["key"] for r in listed}:
                    continue
                self.board.decide(
                    ledger,
                    action=approval_action(
                        dataset=s.dataset,
                        project=project,
                        purpose=f"study {project}",
                        researchers=[*((r["name"], r["key"]) for r in listed), (self.researcher.name, key)],
                    ),
                    reason=f"approve {self.researcher.name} for project {project}",
                    proposed_by=SIMULATED_ETHICS_BOARD,
                )


def _per_site(value: int | dict[str, int] | None, site_id: str) -> int | None:
    return value.get(site_id) if isinstance(value, dict) else value


def _check_disclosure_rules(configs: list[SiteConfig]) -> None:
    """Refuse a rule below the workbench's limits now, not at the first query."""
    from federation.site.config import disclosure_rules

    for site in configs:
        disclosure_rules(site=site)
