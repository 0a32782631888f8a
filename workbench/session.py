"""The notebook front door: one object per federation of hospitals.

>>> wb = Workbench.simulate(sites=3, rows=400, workdir=tmp)      # doctest: +SKIP
>>> result = wb.train(target_epsilon=1.0, rounds=3)               # doctest: +SKIP
>>> wb.budget()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from datasets_synthetic import generate_hospitals, write_hospitals
from federation.coordinator.range_phase import RangeFinding
from federation.data.dictionary import DataDictionary
from federation.data.errors import DataDictionaryError
from federation.data.loader import load_sites, site_files
from federation.data.unranged import UnrangedSchema, infer_schema_without_ranges
from federation.protocol.authorization import sign_study
from federation.protocol.spec import TrainingSpec, refuse_site_owned
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder, SiteArrays
from privacy_budgets import Ledger
from privacy_budgets.proposals import allocation_action, approval_action, cap_action
from privacy_budgets.simulated_board import SimulatedBoard
from workbench.burn_down import budget_history, plot_burn_down
from workbench.description import Description, schema_rows, site_rows
from workbench.errors import PlanDoesNotFit, StudyRefused, as_workbench_errors, refused_paragraph
from workbench.live_plot import LivePlot
from workbench.planning import TrainingPlan, plan_training
from workbench.progress import ProgressObserver
from workbench.researcher import SimulatedResearcher
from workbench.results import TrainingResult

if TYPE_CHECKING:
    from federation.analytics.query import Query
    from workbench.analytics import QueryBuilder
    from workbench.connected import ConnectedWorkbench
    from workbench.query_results import QueryResult, QueryResults
    from workbench.tuning import TuningResult
    from workbench.tuning_plan import TuningPlan

SIMULATED_SITE_IT = "site IT (simulated)"
SIMULATED_ETHICS_BOARD = "ethics board (simulated)"


def with_target(dictionary: DataDictionary, target: str) -> DataDictionary:
    """The same dictionary with ``target`` as the outcome to predict."""
    dictionary.column(target)  # clear KeyError for an unknown column
    columns = []
    for col in dictionary.columns:
        if col.name == target:
            col = dataclasses.replace(col, role="target")
        elif col.role == "target":
            col = dataclasses.replace(col, role="target_detail")
        columns.append(col)
    return dataclasses.replace(dictionary, columns=tuple(columns))


class Workbench:
    """Hospitals, their ledgers, and the studies run across them."""

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
        #: The simulation's researcher (a real key under ``workdir/researcher``): every
        #: study and query batch is signed with it, and the simulated board approves it
        #: for each project at each site before the first request (None: unsigned).
        self.researcher = researcher
        #: The simulated ethics board (real keys under ``workdir/board``, apart from the
        #: ledgers): every site's ledger records it, and caps and allocations are its
        #: signed decisions (2 of 3 members).
        self.board = board
        #: The public data dictionary; None when the folder has none (ranges are
        #: then found by a DP query charged to every site, see ``train``).
        self.dictionary = dictionary
        self.schema = schema
        self.workdir = workdir

    # --- construction -------------------------------------------------------------

    @classmethod
    def simulate(
        cls,
        *,
        data: str | Path | None = None,
        sites: int = 4,
        rows: int = 5000,
        seed: int = 7,
        workdir: str | Path = "runs/simulation",
        site_cap: float = 10.0,
        delta: float = 1e-5,
        min_cell_size: int | dict[str, int] | None = None,
        true_count_floor: int | dict[str, int] | None = None,
        site_policy: dict[str, Any] | None = None,
    ) -> Workbench:
        """Hospitals simulated on this machine, on Flower's simulation engine.

        ``data`` is a folder of per-site files with a ``data_dictionary.json``; when
        omitted, ``sites`` synthetic hospitals of about ``rows`` patients are made
        (deterministic for ``seed``). Every site gets a ledger under ``workdir``
        holding a simulated ethics board (``workdir/board``: 3 members with real keys,
        quorum 2); a site without a cap gets ``site_cap``, proposed by its IT and signed
        by the board. A simulated researcher (``workdir/researcher``, a real Ed25519 key)
        signs every study and query batch; the board approves it for each project at
        each site, and the sites serve only signed requests (as a node made by
        ``workbench node init`` does; ``site_policy={"require_signed_requests": False}``
        turns that off).
        ``min_cell_size`` and ``true_count_floor`` are the sites' disclosure rules for
        analytics (one number for all sites, or site id -> number; see
        ``federation/analytics/disclosure.py``): by default 5 and none.
        ``site_policy`` sets other keys of every simulated site's policy, as its IT
        would in node.toml's [training] section, by name: e.g. ``{"holdout_fraction":
        0.3, "allowed_targets": ["cardiac_event"]}``. Each site owns its held-out split,
        the outcomes a study may predict and its limits on a study's sizes; by default a
        simulated site has the defaults of ``workbench node init``.
        """
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

    @classmethod
    def connect(cls, *, coordinator: str | Path, **options: Any) -> ConnectedWorkbench:
        """Hospitals running real nodes, through a running coordinator (its folder).
        Same study methods as ``simulate``; see ``workbench.connected.connect``."""
        from workbench.connected import connect

        return connect(coordinator=coordinator, **options)

    # --- looking ------------------------------------------------------------------

    @property
    def sites(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"site": s.site_id, "dataset": s.dataset, "data": str(s.data_path), "ledger": str(s.ledger_path)}
                for s in self._sites
            ]
        )

    def site_configs(self) -> list[SiteConfig]:
        return list(self._sites)

    def ledger(self, site: str) -> Ledger:
        for s in self._sites:
            if s.site_id == site:
                return open_site_ledger(s)
        raise KeyError(f"no site {site!r}; sites are {', '.join(s.site_id for s in self._sites)}.")

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

    def plot_budget(self, *, axes: Any = None):
        """Burn-down per site: epsilon spent over ledger entries, per project, and the cap."""
        return plot_burn_down(self.budget_history(), axes=axes)

    def report(self, *, out: str | Path | None = None) -> BudgetReports:
        """The ethics board's HTML report of every site's ledger (one self-contained file
        per site, with burn-down plots, every entry in words and the verification)."""
        from privacy_budgets.report import build_report

        folder = Path(out) if out is not None else self.workdir / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for s in self._sites:
            with open_site_ledger(s) as ledger:
                verdict = ledger.verify()
                path = build_report(ledger, out=folder / f"{s.site_id}.html")
            rows.append({"site": s.site_id, "report": str(path), "verified": verdict.ok, "verdict": str(verdict)})
        return BudgetReports(frame=pd.DataFrame(rows))

    def describe(self, *, project: str = "describe", epsilon: float = 0.05, level: float = 0.95) -> Description:
        """The schema (public) and each site's number of patients as a DP count.

        Each site adds noise to its own count and charges ``epsilon`` to ``project``
        in its ledger (a simulated ethics board grants the project ``epsilon`` where it
        has no allocation yet). Asked again on the same data, the sites replay the same
        answer at no cost.
        """
        if self.dictionary is None:
            raise DataDictionaryError(
                "describe() needs a data dictionary (column kinds and public ranges); this folder "
                "has none. Write data_dictionary.json beside the site files."
            )
        self._grant_where_missing(project=project, epsilon=epsilon, reason="describing the hospitals")
        counts = self.ask(
            self.query.count(by="site", epsilon=epsilon, label="patients per site"), project=project, level=level
        )
        return Description(
            schema=schema_rows(dictionary=self.dictionary),
            sites=site_rows(sites=self.sites, counts=counts),
            counts=counts,
            project=project,
        )

    # --- doing --------------------------------------------------------------------

    def allocate(self, *, project: str, epsilon: float, actor: str = SIMULATED_ETHICS_BOARD, reason: str = "") -> None:
        """Grant ``project`` an allocation of ``epsilon`` at every site: a proposal by
        ``actor``, signed by the simulated board's quorum, applied to each ledger."""
        for s in self._sites:
            with open_site_ledger(s) as ledger:
                self._decide(
                    ledger,
                    action=allocation_action(dataset=s.dataset, project=project, epsilon=epsilon),
                    reason=reason or f"allocation for study {project}",
                    proposed_by=actor,
                )
        self._approve_where_missing(project=project)

    def approvals(self) -> pd.DataFrame:
        """Every site's approvals: which researchers (name, key fingerprint) its ethics
        board approved for which project, and at which ledger entry."""
        from privacy_budgets import store
        from privacy_budgets.authority import GOVERNED_KINDS, Governance
        from privacy_budgets.exports import read_only
        from privacy_budgets.signatures import SshPublicKey

        rows = []
        for s in self._sites:
            with read_only(s.ledger_path) as conn:
                governance = Governance.replay(store.governed_entries(conn, kinds=GOVERNED_KINDS))
            for (_dataset, project), approval in sorted(governance.approvals.items()):
                for item in approval.researchers:
                    rows.append(
                        {
                            "site": s.site_id,
                            "project": project,
                            "researcher": item["name"],
                            "key": SshPublicKey.from_openssh(item["key"]).fingerprint,
                            "approved_at_seq": approval.seq,
                        }
                    )
        return pd.DataFrame(rows, columns=["site", "project", "researcher", "key", "approved_at_seq"])

    def _approve_where_missing(self, *, project: str) -> None:
        """What the simulated ethics board does before a signed request: approve the
        simulated researcher's key for ``project`` at every site that has not (a
        quorum-signed ``approve`` entry beside the allocation)."""
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

    def _signer(self):
        """The researcher's signer, once its approval for the project is in place."""
        return None if self.researcher is None else self.researcher.signer()

    def _grant_where_missing(self, *, project: str, epsilon: float, reason: str) -> None:
        """What a simulated ethics board does: grant ``project`` ``epsilon`` at every
        site where it has no allocation yet (an existing allocation is left as it is)."""
        for s in self._sites:
            with open_site_ledger(s) as ledger:
                if ledger.allocation(dataset=s.dataset, project=project) is None:
                    self._decide(
                        ledger,
                        action=allocation_action(dataset=s.dataset, project=project, epsilon=epsilon),
                        reason=reason,
                        proposed_by=SIMULATED_ETHICS_BOARD,
                    )
        self._approve_where_missing(project=project)

    def _decide(self, ledger: Ledger, *, action: dict, reason: str, proposed_by: str) -> None:
        """The simulated board's signed decision; one-person in a ledger without a board."""
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

    def train(
        self,
        *,
        target_epsilon: float,
        rounds: int,
        project: str | None = None,
        target: str | None = None,
        verbose: bool = False,
        on_round: Any = None,
        **hyperparameters: Any,
    ) -> TrainingResult:
        """Train a model across the sites with DP-SGD at every site.

        ``target_epsilon`` is the project's total at each site, and what the project
        already spent there counts towards it: a second training of the same project
        gets only what is left (a project with nothing left is refused with its own
        numbers). A project without an allocation is granted exactly ``target_epsilon``
        at each site (as a simulated ethics board would); the sites' ledgers refuse
        anything beyond their caps.
        """
        from federation.engines.simulation import run_simulated_training
        from federation.training.models import build_model

        refuse_site_owned(hyperparameters)
        project = project or f"study-{uuid.uuid4().hex[:6]}"
        spec = TrainingSpec(project=project, target_epsilon=target_epsilon, rounds=rounds, **hyperparameters)
        encoder, range_finding = None, None
        if self.dictionary is not None:
            encoder = self.encoder(target=target)
        elif target is None:
            raise DataDictionaryError(
                "without a data dictionary the outcome column must be named: pass target='COLUMN'."
            )
        else:
            range_finding = RangeFinding(schema=self.schema, target=target)
        if encoder is not None:
            self._refuse_unless_plan_fits(spec=spec, target=target, hyperparameters=hyperparameters)
        self._grant_where_missing(project=project, epsilon=target_epsilon, reason=f"allocation for study {project}")
        signer = self._signer()
        authorization = (
            None
            if signer is None
            else sign_study(
                signer,
                project=project,
                run_id=spec.run_id,
                spec_config=spec.to_config(),
                encoder_json=None if encoder is None else encoder.to_json(),
                max_rounds=spec.rounds,
            )
        )
        observer = ProgressObserver(
            rounds=rounds, on_round=on_round, live_plot=LivePlot(target_epsilon=target_epsilon, rounds=rounds)
        )
        try:
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
        finally:
            observer.close()
        if outcome.completed_rounds == 0 and outcome.stopped_reason:
            raise StudyRefused(refused_paragraph(stopped_reason=outcome.stopped_reason))
        encoder = outcome.encoder
        model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
        model.load_state_dict(outcome.arrays.to_torch_state_dict())
        totals = {}
        for s in self._sites:  # a simulation holds every ledger; a coordinator never does
            with open_site_ledger(s) as ledger:
                totals[s.site_id] = ledger.spent(dataset=s.dataset)
        return TrainingResult(
            spec=spec,
            history=observer.history(),
            model=model,
            receipts=outcome.receipts,
            stopped_reason=outcome.stopped_reason,
            encoder=encoder,
            study_dictionary=outcome.dictionary,
            pooled=observer.pooled_history(),
            dataset_totals=totals,
        )

    def plan_training(
        self,
        *,
        target_epsilon: float,
        rounds: int,
        project: str = "plan",
        target: str | None = None,
        noise_multipliers: tuple[float, ...] = (0.8, 1.0, 1.5, 2.0, 3.0),
        **hyperparameters: Any,
    ) -> TrainingPlan:
        """Project each site's epsilon for a training, without spending anything.

        ``target_epsilon`` is the project's total at each site, what it already spent
        there included (see ``train``). Per site: its sampling rate, the noise it would
        calibrate, the project's total before and after, the ledger's total after the
        study and whether that fits its cap and the project's allocation;
        ``plan.what_if`` (and ``plan.plot()``) show epsilon against noise and rounds.
        The arguments are those of ``train``. Each site's plan splits the target between
        DP-SGD and its noisy evaluations (its ``evaluation_share``): the columns show both.
        """
        refuse_site_owned(hyperparameters)
        return plan_training(
            self,
            target_epsilon=target_epsilon,
            rounds=rounds,
            project=project,
            target=target,
            noise_multipliers=noise_multipliers,
            **hyperparameters,
        )

    def plan_tuning(
        self,
        *,
        candidates: list[dict[str, Any]],
        target_epsilon: float,
        rounds: int,
        project: str,
        final_share: float | None = None,
        target: str | None = None,
        **common: Any,
    ) -> TuningPlan:
        """Each site's cost of a whole hyperparameter search, without spending anything.

        ``target_epsilon`` is the search's total per site: every candidate run (its
        DP-SGD rounds and the site's noisy evaluations, each under its own ledger project
        ``<project>-tuneNN``), the project's earlier spending and, with ``final_share``,
        the training of the chosen configuration again. The plan shows the per-candidate
        epsilon, each site's composed total beside the naive sum, and whether it fits.
        ``common`` hyperparameters apply to every candidate (a candidate's own win).
        """
        from workbench.tuning_plan import plan_tuning

        return plan_tuning(
            self,
            candidates=candidates,
            target_epsilon=target_epsilon,
            rounds=rounds,
            project=project,
            final_share=final_share,
            target=target,
            **common,
        )

    def tune(
        self,
        *,
        candidates: list[dict[str, Any]],
        target_epsilon: float,
        rounds: int,
        project: str,
        final_share: float | None = None,
        score: str = "accuracy",
        target: str | None = None,
        verbose: bool = False,
        **common: Any,
    ) -> TuningResult:
        """Run a charged hyperparameter search: every candidate is a study charged through
        the sites' normal paths, the best is chosen from the sites' noisy evaluations
        (free post-processing), and with ``final_share`` it is trained again under
        ``project``. Refused before anything runs when the plan (``plan_tuning``) does not
        fit; the result reports what the ledgers hold afterwards."""
        from workbench.tuning import tune

        return tune(
            self,
            candidates=candidates,
            target_epsilon=target_epsilon,
            rounds=rounds,
            project=project,
            final_share=final_share,
            score=score,
            target=target,
            verbose=verbose,
            **common,
        )

    def tune_locally(
        self,
        *,
        candidates: list[dict[str, Any]],
        target_epsilon: float,
        rounds: int,
        project: str,
        mean: float = 4.0,
        shape: str = "geometric",
        target: str | None = None,
        **common: Any,
    ) -> pd.DataFrame:
        """Each site tunes on its own rows and releases only its best configuration (private
        selection, Papernot & Steinke 2022): charged once per site as the proven (epsilon,
        delta) pair, its delta a tenth of the dataset's. ``target_epsilon`` is that epsilon;
        ``mean`` and ``shape`` give the random number of runs. One row per site."""
        from workbench.local_tuning import tune_locally_at_sites

        return tune_locally_at_sites(
            self,
            candidates=candidates,
            target_epsilon=target_epsilon,
            rounds=rounds,
            project=project,
            mean=mean,
            shape=shape,
            target=target,
            **common,
        )

    def _refuse_unless_plan_fits(
        self, *, spec: TrainingSpec, target: str | None, hyperparameters: dict[str, Any]
    ) -> None:
        """Stop before the engine starts when a site's cap or the project's allocation
        cannot hold the study: the sites would refuse it anyway, round by round."""
        plan = self.plan_training(
            target_epsilon=spec.target_epsilon,
            rounds=spec.rounds,
            project=spec.project,
            target=target,
            noise_multipliers=(1.0,),
            **hyperparameters,
        )
        if plan.fits:
            return
        misfits = plan.per_site[~plan.per_site["fits"]]
        reasons = "; ".join(f"site {r['site']}: {r['binding']}" for _, r in misfits.iterrows())
        raise PlanDoesNotFit(
            f"This training (target epsilon {spec.target_epsilon:g} per site over {spec.rounds} rounds, "
            f"project '{spec.project}') does not fit: {reasons}. Nothing was trained or charged. "
            "What to do: lower target_epsilon, ask the ethics board for a larger allocation, or "
            "see wb.plan_training(...) for what fits."
        )

    def encoder(self, *, target: str | None = None) -> FeatureEncoder:
        """How the study encodes features: the dictionary's public ranges only."""
        if self.dictionary is None:
            raise DataDictionaryError("no data dictionary: the encoder is built from DP ranges during train().")
        dictionary = with_target(self.dictionary, target) if target else self.dictionary
        return FeatureEncoder.from_dictionary(dictionary=dictionary)

    # --- analytics ----------------------------------------------------------------

    @property
    def query(self) -> QueryBuilder:
        """Build analytics queries (nothing runs): ``wb.query.mean(column=..., bounds=...,
        epsilon=...)``; then ``wb.ask([...])``. See ``workbench.analytics.QueryBuilder``."""
        from workbench.analytics import QueryBuilder

        return QueryBuilder(dictionary=self.dictionary)

    def ask(
        self, queries: Query | list[Query], *, project: str, level: float = 0.95, verbose: bool = False
    ) -> QueryResult | QueryResults:
        """Answer queries at every site, with DP noise and suppression, charged to ``project``.

        All queries go in ONE simulation run: the engine's start (about 25 s) is paid once,
        so pass a list. A question already answered on the same data is replayed by each
        site at no cost. The project needs an allocation at each site (``allocate``);
        a site without one refuses. Returns one result for a query, a list for a list.
        """
        from workbench.analytics import ask

        self._approve_where_missing(project=project)
        return ask(
            sites=self._sites, queries=queries, project=project, level=level, verbose=verbose, signer=self._signer()
        )

    def query_cost(self, queries: Query | list[Query], *, project: str) -> pd.DataFrame:
        """What each query would cost at each site, without running it (0 for a replay)."""
        from workbench.analytics import cost

        return cost(sites=self._sites, queries=queries, project=project)

    def held_out_metrics(self, *, result: TrainingResult) -> pd.DataFrame:
        """``result``'s model on every site's held-out rows, exactly (loss, accuracy, AUC).

        Only a simulation can compute this: it holds every hospital's table. The
        hospitals themselves send only noisy counts (``result.history`` and
        ``result.weighted()`` are estimates from those); this shows what the model
        really does, on the same rows as the baselines of ``local_arrays``.
        """
        from federation.training.evaluation import binary_metrics, predict_proba

        rows = []
        for site, arrays in self.local_arrays(result=result).items():
            metrics = binary_metrics(y_true=arrays.y_test, proba=predict_proba(model=result.model, x=arrays.x_test))
            rows.append({"model": "federated DP-SGD", "site": site, "num_examples": len(arrays.y_test), **metrics})
        return pd.DataFrame(rows)

    def local_arrays(self, *, result: TrainingResult) -> dict[str, SiteArrays]:
        """Every site's splits as ``result``'s study encoded them, read here: only a
        simulation can do this (for baselines)."""
        config = None
        if result.study_dictionary is not None:
            config = {"study-dictionary": json.dumps(result.study_dictionary.to_json())}
        return {
            s.site_id: site_arrays(site=s, policy=site_policy(s), encoder=result.encoder, config=config)
            for s in self._sites
        }


class BudgetReports:
    """Where each site's HTML report was written, and whether its ledger verified."""

    def __init__(self, *, frame: pd.DataFrame) -> None:
        self.frame = frame

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.frame["report"]]

    def __repr__(self) -> str:
        return f"BudgetReports\n{self.frame.to_string(index=False)}"

    def _repr_html_(self) -> str:
        import html

        failed = "<b style='color:#cf222e'>FAILED</b>"
        rows = "".join(
            f"<tr><td>{html.escape(r['site'])}</td><td><a href='{html.escape(Path(r['report']).resolve().as_uri())}' "
            f"target='_blank'>{html.escape(Path(r['report']).name)}</a></td>"
            f"<td>{'verified' if r['verified'] else failed}</td>"
            f"<td>{html.escape(str(r['verdict']))}</td></tr>"
            for _, r in self.frame.iterrows()
        )
        return (
            "<h4>Ethics board reports</h4><table><tr><th>site</th><th>report</th><th>ledger</th>"
            f"<th>verification</th></tr>{rows}</table>"
        )


def site_policy(site: SiteConfig) -> NodePolicy:
    """A simulated site's policy: the defaults of ``node init``, with its overrides."""
    return NodePolicy.default_for(site)


def _per_site(value: int | dict[str, int] | None, site_id: str) -> int | None:
    return value.get(site_id) if isinstance(value, dict) else value


def _check_disclosure_rules(configs: list[SiteConfig]) -> None:
    """Refuse a rule below the workbench's limits now, not at the first query."""
    from federation.site.config import disclosure_rules

    for site in configs:
        disclosure_rules(site=site)
