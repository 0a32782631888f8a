"""The notebook front door: one ``Workbench`` over the place its studies run.

>>> wb = Workbench.simulate(sites=3, rows=400, workdir=tmp)      # doctest: +SKIP
>>> result = wb.train(target_epsilon=1.0, rounds=3)               # doctest: +SKIP
>>> wb.budget()                                                   # doctest: +SKIP
>>> result.model                                                  # doctest: +SKIP

``Workbench.simulate(...)`` runs hospitals simulated on this machine;
``Workbench.connect(coordinator=FOLDER, ...)`` real hospital nodes behind a running
coordinator, on its machine; ``Workbench.connect(url=..., identity=KEY, ca=CA, ...)`` the
same through the coordinator's study service, from the researcher's own machine. The
methods below are written once, on the primitives of a back end
(``workbench.backends.base.Backend``). What a back end cannot do is absent from
``wb.capabilities``; asking for it says once why, and where it is done instead.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from federation.coordinator.range_phase import RangeFinding
from federation.data.dictionary import DataDictionary
from federation.data.errors import DataDictionaryError
from federation.protocol.authorization import sign_study
from federation.protocol.spec import TrainingSpec, refuse_site_owned
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder, SiteArrays
from privacy_budgets import Ledger
from privacy_budgets.proposals import allocation_action
from workbench.backends.base import (
    FOLLOW,
    NEEDS,
    PLAN_TRAINING,
    Backend,
    FollowsStudies,
    HoldsSites,
    RunOptions,
    TrainingRun,
    absent_message,
)
from workbench.backends.simulation import SIMULATED_ETHICS_BOARD, SimulationBackend
from workbench.burn_down import plot_burn_down
from workbench.description import Description, schema_rows, site_rows
from workbench.errors import NotAvailable, PlanDoesNotFit, StudyRefused, refused_paragraph
from workbench.live_plot import LivePlot
from workbench.planning import PlanWithoutSizes, TrainingPlan, plan_from_counts, plan_training
from workbench.progress import ProgressObserver
from workbench.reports import BudgetReports, build_reports
from workbench.results import TrainingResult

if TYPE_CHECKING:
    from federation.analytics.query import Query
    from privacy_budgets.signatures import Signer
    from workbench.analytics import QueryBuilder
    from workbench.query_results import QueryResult, QueryResults
    from workbench.tuning import TuningResult
    from workbench.tuning_plan import TuningPlan

__all__ = ["BudgetReports", "Workbench", "site_policy", "with_target"]


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
    """Hospitals, their budgets, and the studies run across them, wherever they run."""

    def __init__(self, *, backend: Backend) -> None:
        self._backend = backend
        self._description: Description | None = None  # this session's last describe(): sizes to plan from

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
        return cls(
            backend=SimulationBackend.create(
                data=data,
                sites=sites,
                rows=rows,
                seed=seed,
                workdir=workdir,
                site_cap=site_cap,
                delta=delta,
                min_cell_size=min_cell_size,
                true_count_floor=true_count_floor,
                site_policy=site_policy,
            )
        )

    @classmethod
    def connect(
        cls,
        *,
        coordinator: str | Path | None = None,
        url: str | None = None,
        identity: str | Path | Signer | None = None,
        dictionary: str | Path | DataDictionary | None = None,
        sites: int | None = None,
        researcher: str | Path | Signer | None = None,
        passphrase: str | None = None,
        ca: str | Path | None = None,
    ) -> Workbench:
        """Hospitals running real nodes, through a running coordinator.

        ``coordinator`` is the coordinator's folder (``workbench coordinator init``), on
        this machine: the coordinator's operator works there. ``url`` (with ``identity``,
        the researcher's key) is a coordinator's study service, reached from the
        researcher's own machine, checked against the coordinator's CA certificate ``ca``
        (its ``ca.crt``). ``dictionary`` is the study's public data dictionary
        (its ranges encode the features); ``sites`` how many sites a study waits for
        (default: every registered site); ``researcher`` (or ``identity``) the
        researcher's private key (``workbench researcher init``; its passphrase is asked
        once, or ``passphrase``) or a signer: every study and query batch is signed with
        it, and each site serves it only when its ethics board approved that key for the
        project. Same study methods as ``simulate``; see ``wb.capabilities``.
        """
        if (coordinator is None) == (url is None):
            raise ValueError(
                "Workbench.connect needs exactly one of coordinator=FOLDER (on the coordinator's machine) or "
                f"url='https://coordinator:PORT' (a study service); got coordinator={coordinator!r}, url={url!r}."
            )
        if identity is not None and researcher is not None:
            raise ValueError("give the researcher's key once: identity=KEY (researcher= is its older name).")
        key = identity if identity is not None else researcher
        if ca is not None and url is None:
            raise ValueError(
                f"ca= checks a study service's certificate, so it goes with url=...; got ca={str(ca)!r} with "
                "coordinator=FOLDER. Fix: leave ca= out on the coordinator's machine."
            )
        if url is not None:
            from workbench.backends.remote import RemoteBackend

            return cls(
                backend=RemoteBackend.open(
                    url=url, identity=key, ca=ca, dictionary=dictionary, sites=sites, passphrase=passphrase
                )
            )
        from workbench.backends.coordinator_folder import CoordinatorFolderBackend

        return cls(
            backend=CoordinatorFolderBackend.open(
                coordinator=coordinator, dictionary=dictionary, sites=sites, researcher=key, passphrase=passphrase
            )
        )

    # --- where studies run --------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The back end this workbench runs its studies on."""
        return self._backend

    @property
    def capabilities(self) -> frozenset[str]:
        """What this back end offers (names from ``workbench.backends.base``)."""
        return self._backend.capabilities

    def _holder(self, method: str) -> HoldsSites:
        """The back end, when it holds what ``method`` needs; else the one clear refusal."""
        capability = NEEDS[method]
        if capability not in self._backend.capabilities or not isinstance(self._backend, HoldsSites):
            raise NotAvailable(absent_message(method=method, capability=capability, backend=self._backend.name))
        return self._backend

    def __repr__(self) -> str:
        return f"Workbench({self._backend.name}; offers {', '.join(sorted(self.capabilities))})"

    # --- looking ------------------------------------------------------------------

    @property
    def dictionary(self) -> DataDictionary | None:
        """The public data dictionary; None when there is none (ranges are then found by
        a DP query charged to every site, see ``train``)."""
        return self._backend.dictionary

    @property
    def sites(self) -> pd.DataFrame:
        return self._backend.sites()

    @property
    def researcher(self) -> Any:
        """A simulation's researcher (a real key under ``workdir/researcher``); None elsewhere."""
        return getattr(self._backend, "researcher", None)

    @property
    def board(self) -> Any:
        """A simulation's ethics board (real keys under ``workdir/board``); None elsewhere:
        a real board decides at its hospital."""
        return getattr(self._backend, "board", None)

    @property
    def workdir(self) -> Path | None:
        """A simulation's folder (data, ledgers, reports); None elsewhere."""
        return getattr(self._backend, "workdir", None)

    def site_configs(self) -> list[SiteConfig]:
        return self._holder("site_configs").site_configs()

    def ledger(self, site: str) -> Ledger:
        for s in self._holder("ledger").site_configs():
            if s.site_id == site:
                return open_site_ledger(s)
        raise KeyError(f"no site {site!r}; sites are {', '.join(self.sites['site'])}.")

    def receipts(self) -> list[dict[str, Any]]:
        """Every signed spend receipt this workbench sees (a simulation: every ledger's;
        a coordinator: its mirror of the receipts the sites sent)."""
        return self._backend.receipts()

    def budget(self) -> pd.DataFrame:
        """Epsilon spent per site and project: a simulation reads its ledgers (caps,
        allocations, spent, remaining); a coordinator shows its MIRROR of the sites'
        signed receipts (each site's own ledger stays the source of truth)."""
        return self._backend.budget()

    def budget_history(self) -> pd.DataFrame:
        """Every ledger entry that moved a total or a limit, all sites, in order."""
        return self._backend.budget_history()

    def plot_budget(self, *, axes: Any = None):
        """Burn-down per site: epsilon spent over ledger entries, per project (and the cap
        where this workbench holds the ledgers)."""
        return plot_burn_down(self.budget_history(), axes=axes)

    def report(self, *, out: str | Path | None = None) -> BudgetReports:
        """The ethics board's HTML report of every site's ledger (one self-contained file
        per site, with burn-down plots, every entry in words and the verification)."""
        holder = self._holder("report")
        folder = Path(out) if out is not None else Path(self.workdir or ".") / "reports"
        return build_reports(sites=holder.site_configs(), out=folder)

    def describe(self, *, project: str = "describe", epsilon: float = 0.05, level: float = 0.95) -> Description:
        """The schema (public) and each site's number of patients as a DP count.

        Each site adds noise to its own count and charges ``epsilon`` to ``project``
        in its ledger (whose ethics board must have allocated it; a simulated board
        grants the project ``epsilon`` where it has no allocation yet). Asked again on the
        same data, the sites replay the same answer at no cost.
        """
        if self.dictionary is None:
            raise DataDictionaryError(
                "describe() needs a data dictionary (column kinds and public ranges); there is none here. "
                "Write data_dictionary.json beside the site files, or pass dictionary=... to Workbench.connect."
            )
        self._backend.prepare_project(project=project, epsilon=epsilon, reason="describing the hospitals")
        counts = self.ask(
            self.query.count(by="site", epsilon=epsilon, label="patients per site"), project=project, level=level
        )
        known = self.sites
        if "dataset" not in known:  # a coordinator knows its sites' names, not their datasets
            known = pd.DataFrame({"site": list(counts.sites["site"]), "dataset": ""})
        self._description = Description(
            schema=schema_rows(dictionary=self.dictionary),
            sites=site_rows(sites=known, counts=counts),
            counts=counts,
            project=project,
        )
        return self._description

    # --- the ethics board (where the ledgers are here) ------------------------------

    def allocate(self, *, project: str, epsilon: float, actor: str = SIMULATED_ETHICS_BOARD, reason: str = "") -> None:
        """Grant ``project`` an allocation of ``epsilon`` at every site: a proposal by
        ``actor``, signed by the simulated board's quorum, applied to each ledger."""
        holder = self._holder("allocate")
        for s in holder.site_configs():
            holder.decide(
                site=s,
                action=allocation_action(dataset=s.dataset, project=project, epsilon=epsilon),
                reason=reason or f"allocation for study {project}",
                proposed_by=actor,
            )
        self._backend.prepare_project(project=project, epsilon=None, reason="")

    def approvals(self) -> pd.DataFrame:
        """Every site's approvals: which researchers (name, key fingerprint) its ethics
        board approved for which project, and at which ledger entry."""
        from workbench.reports import approvals_frame

        return approvals_frame(sites=self._holder("approvals").site_configs())

    # --- training -----------------------------------------------------------------

    def train(
        self,
        *,
        target_epsilon: float,
        rounds: int,
        project: str | None = None,
        target: str | None = None,
        verbose: bool = False,
        on_round: Callable[[Any], None] | None = None,
        on_wait: Callable[[str], None] | None = None,
        on_start: Callable[[str], None] | None = None,
        timeout: float = RunOptions.timeout,
        site_timeout: float = RunOptions.site_timeout,
        prompt_replies: bool = RunOptions.prompt_replies,
        unfollowed_after: float = RunOptions.unfollowed_after,
        **hyperparameters: Any,
    ) -> TrainingResult:
        """Train a model across the sites with DP-SGD at every site; ``result.model`` is
        the trained ``torch.nn.Module``.

        ``target_epsilon`` is the project's total at each site, and what the project
        already spent there counts towards it: a second training of the same project
        gets only what is left (a project with nothing left is refused with its own
        numbers). Each site's ledger must hold an allocation for ``project`` (a simulated
        ethics board grants exactly ``target_epsilon`` where there is none; a real one
        decides at its hospital); the sites' ledgers refuse anything beyond their caps.
        Where this workbench can plan (``plan_training``), a study that does not fit is
        refused before anything runs.

        Against real sites: ``timeout`` bounds the whole study; ``site_timeout`` is how
        long the coordinator waits for a site to connect or reply before it names the
        site as failed and stops the study; ``on_wait(text)`` is told which site is late;
        ``on_start(run_id)`` the run's id (for ``workbench study cancel``); Ctrl-C cancels
        the study and ``StudyCancelled`` lists what each site was charged. A simulation
        runs here and waits on nobody. See ``workbench.backends.base.RunOptions``.
        """
        refuse_site_owned(hyperparameters)
        project = project or f"study-{uuid.uuid4().hex[:6]}"
        spec = TrainingSpec(project=project, target_epsilon=target_epsilon, rounds=rounds, **hyperparameters)
        encoder, range_finding = self._study_encoding(target=target)
        if encoder is not None and isinstance(self._backend, HoldsSites):
            self._refuse_unless_plan_fits(spec=spec, target=target, hyperparameters=hyperparameters)
        self._backend.prepare_project(project=project, epsilon=target_epsilon, reason=f"allocation for study {project}")
        options = RunOptions(
            timeout=timeout,
            site_timeout=site_timeout,
            on_wait=on_wait,
            on_start=on_start,
            prompt_replies=prompt_replies,
            unfollowed_after=unfollowed_after,
        )
        signer = self._backend.signer
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
                expires_in=options.expiry,
            )
        )
        observer = ProgressObserver(
            rounds=rounds,
            on_round=on_round,
            on_wait=on_wait,
            live_plot=LivePlot(target_epsilon=target_epsilon, rounds=rounds),
        )
        try:
            run = self._backend.run_training(
                spec=spec,
                encoder=encoder,
                range_finding=range_finding,
                authorization=authorization,
                observer=observer,
                options=options,
                verbose=verbose,
            )
        finally:
            observer.close()
        return self._result(spec=spec, run=run, observer=observer)

    def _result(self, *, spec: TrainingSpec, run: TrainingRun, observer: ProgressObserver) -> TrainingResult:
        """The ``TrainingResult`` of a study's run: its model rebuilt from the spec."""
        if run.completed_rounds == 0 and run.stopped_reason:
            raise StudyRefused(refused_paragraph(stopped_reason=run.stopped_reason), charges=run.charges)
        from federation.training.models import build_model

        model = build_model(name=spec.model, n_features=run.encoder.n_features, hidden=spec.hidden)
        model.load_state_dict(run.state_dict)
        return TrainingResult(
            spec=spec,
            history=observer.history(),
            model=model,
            receipts=run.receipts,
            stopped_reason=run.stopped_reason,
            encoder=run.encoder,
            study_dictionary=run.study_dictionary,
            charges=run.charges,
            pooled=observer.pooled_history(),
            dataset_totals=run.dataset_totals,
        )

    def studies(self) -> pd.DataFrame:
        """Your own studies at the coordinator, newest first (``study``, ``project``,
        ``started``, ``status``: ``running`` until its end, ``rounds_done``); any notebook
        connected with your key sees them, so a study outlives the kernel that started it.

        >>> wb.studies()                                  # doctest: +SKIP
        """
        return self._follower("studies").studies()

    def follow(
        self, *, study: str, verbose: bool = False, on_round: Callable[[Any], None] | None = None
    ) -> TrainingResult:
        """Follow one of your studies (``wb.studies()``) to its end, from this kernel: the
        same ``TrainingResult`` as ``train`` would have returned (progress bar and live plot
        over its rounds, ``result.model``, charges, receipts). The spec and encoder that
        rebuild the model are the ones you signed, checked against your signature. Another
        researcher's study, or one that does not exist, is refused alike. Ctrl-C cancels
        the study at the coordinator, as in ``train``.

        >>> result = wb.follow(study="3f9c2a1b7d4e")      # doctest: +SKIP
        """
        backend = self._follower("follow")
        spec, encoder = backend.signed_study(study)
        observer = ProgressObserver(
            rounds=spec.rounds,
            on_round=on_round,
            on_wait=None,
            live_plot=LivePlot(target_epsilon=spec.target_epsilon, rounds=spec.rounds),
        )
        try:
            run = backend.follow_training(study=study, encoder=encoder, observer=observer, verbose=verbose)
        finally:
            observer.close()
        return self._result(spec=spec, run=run, observer=observer)

    def _follower(self, method: str) -> FollowsStudies:
        """The back end, when its studies outlive their notebook; else the one clear refusal."""
        if FOLLOW not in self._backend.capabilities or not isinstance(self._backend, FollowsStudies):
            raise NotAvailable(absent_message(method=method, capability=FOLLOW, backend=self._backend.name))
        return self._backend

    def _study_encoding(self, *, target: str | None) -> tuple[FeatureEncoder | None, RangeFinding | None]:
        """The dictionary's public encoder, or (without a dictionary) DP range finding."""
        if self.dictionary is not None:
            return self.encoder(target=target), None
        schema = getattr(self._backend, "schema", None)
        if schema is None:
            raise DataDictionaryError(
                "a study encodes features from the public data dictionary; pass dictionary='data_dictionary.json' "
                "to Workbench.connect."
            )
        if target is None:
            raise DataDictionaryError(
                "without a data dictionary the outcome column must be named: pass target='COLUMN'."
            )
        return None, RangeFinding(schema=schema, target=target)

    def plan_training(
        self,
        *,
        target_epsilon: float,
        rounds: int,
        project: str = "plan",
        target: str | None = None,
        noise_multipliers: tuple[float, ...] = (0.8, 1.0, 1.5, 2.0, 3.0),
        sizes: Description | Mapping[str, float] | None = None,
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

        Where the sites are elsewhere (a coordinator), the plan is an ESTIMATE from public
        parameters and each site's noisy row count: ``sizes`` is a ``describe()`` result
        (or site -> rows from a source you trust), by default this session's last
        ``describe()``; a plan never asks the sites for a count (that is a charged release).
        The project's earlier spending comes from the sites' signed receipts; each site's
        cap and the project's allocation are known only at the site, which calibrates its
        own noise when the study starts and refuses what does not fit (``plan.basis``).
        ``sizes`` on a simulation plans the same way, from those counts.
        """
        refuse_site_owned(hyperparameters)
        if sizes is not None or not isinstance(self._backend, HoldsSites):
            return self._plan_from_counts(
                sizes=sizes,
                target_epsilon=target_epsilon,
                rounds=rounds,
                project=project,
                noise_multipliers=noise_multipliers,
                **hyperparameters,
            )
        holder = self._holder("plan_training")
        return plan_training(
            sites=holder.site_configs(),
            encoder=self.encoder(target=target),
            target_epsilon=target_epsilon,
            rounds=rounds,
            project=project,
            noise_multipliers=noise_multipliers,
            **hyperparameters,
        )

    def _plan_from_counts(self, *, sizes: Description | Mapping[str, float] | None, **plan: Any) -> TrainingPlan:
        """``plan_training`` from the sites' noisy counts (see there)."""
        if PLAN_TRAINING not in self.capabilities:
            self._holder("plan_training")  # the one sentence of ABSENT
        sizes = sizes if sizes is not None else self._description
        if sizes is None:
            raise PlanWithoutSizes(
                f"wb.plan_training() on {self._backend.name} plans from each site's noisy row count, and this "
                "session has none yet: a count is a release each site charges, so a plan never asks for one. "
                "Fix: wb.describe(project=..., epsilon=...) first (its counts are kept for this session), or pass "
                "sizes=DESCRIPTION (a describe() result) or sizes={'SITE': ROWS}."
            )
        if isinstance(sizes, Description):
            source = f"describe(), charged to project '{sizes.project}' at each site"
            sizes = dict(zip(sizes.sites["site"], sizes.sites["patients (noisy)"], strict=True))
        else:
            source = "the sizes passed to plan_training"
        return plan_from_counts(sizes=dict(sizes), source=source, receipts=self.receipts(), **plan)

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
            sites=self._holder("plan_tuning").site_configs(),
            encoder=self.encoder(target=target),
            candidates=candidates,
            target_epsilon=target_epsilon,
            rounds=rounds,
            project=project,
            final_share=final_share,
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
            train=self.train,
            prepare=self._backend.prepare_project,
            sites=self._holder("tune").site_configs(),
            encoder=self.encoder(target=target),
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
        verbose: bool = False,
        **common: Any,
    ) -> pd.DataFrame:
        """Each site tunes on its own rows and releases only its best configuration (private
        selection, Papernot & Steinke 2022): charged once per site as the proven (epsilon,
        delta) pair, its delta a tenth of the dataset's. ``target_epsilon`` is that epsilon;
        ``mean`` and ``shape`` give the random number of runs. It is the sites' task
        ``tune``, sent through the engine and signed like a study. One row per site."""
        from workbench.local_tuning import tune_locally_at_sites

        holder = self._holder("tune_locally")
        return tune_locally_at_sites(
            prepare=self._backend.prepare_project,
            run=holder.run_local_tuning,
            signer=self._backend.signer,
            sites=holder.site_configs(),
            encoder=self.encoder(target=target),
            candidates=candidates,
            target_epsilon=target_epsilon,
            rounds=rounds,
            project=project,
            mean=mean,
            shape=shape,
            verbose=verbose,
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
            raise DataDictionaryError(
                "no data dictionary: the encoder is built from DP ranges during train() (a simulation without "
                "one), or pass dictionary='data_dictionary.json' to Workbench.connect."
            )
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
        self,
        queries: Query | list[Query],
        *,
        project: str,
        level: float = 0.95,
        verbose: bool = False,
        timeout: float = 600.0,
    ) -> QueryResult | QueryResults:
        """Answer queries at every site, with DP noise and suppression, charged to ``project``.

        All queries go in ONE run (a simulation pays the engine's start, about 25 s, once;
        real sites are asked in one Flower run), so pass a list. A question already
        answered on the same data is replayed by each site at no cost. The project needs
        an allocation at each site (``allocate`` in a simulation); a site without one
        refuses. Noise, suppression and the charge are each site's own, behind its policy
        gate and in its audit log. Returns one result for a query, a list for a list.
        ``timeout`` bounds how long real sites have to answer.
        """
        from federation.analytics.estimates import z_value
        from workbench.analytics import as_queries, signed_requests
        from workbench.query_results import QueryResult, QueryResults

        items = as_queries(queries)
        z_value(level)  # a clear error before anything is sent
        self._backend.prepare_project(project=project, epsilon=None, reason="")
        requests = signed_requests(
            items=items, project=project, run_id=uuid.uuid4().hex[:12], signer=self._backend.signer
        )
        answers = self._backend.run_queries(requests=requests, verbose=verbose, timeout=timeout)
        results = QueryResults(
            QueryResult.from_replies(request=request, replies=replies, level=level)
            for request, replies in zip(requests, answers, strict=False)
        )
        return results[0] if not isinstance(queries, (list, tuple)) else results

    def query_cost(self, queries: Query | list[Query], *, project: str, timeout: float = 600.0) -> pd.DataFrame:
        """What each query would cost at each site, as each site computes it, without running
        it or spending (0 for a replay)."""
        from workbench.analytics import as_queries

        return self._backend.query_costs(queries=as_queries(queries), project=project, timeout=timeout)

    # --- the hospitals' rows (a simulation holds them) -----------------------------

    def held_out_metrics(self, *, result: TrainingResult) -> pd.DataFrame:
        """``result``'s model on every site's held-out rows, exactly (loss, accuracy, AUC).

        Only a simulation can compute this: it holds every hospital's table. The
        hospitals themselves send only noisy counts (``result.history`` and
        ``result.weighted()`` are estimates from those); this shows what the model
        really does, on the same rows as the baselines of ``local_arrays``.
        """
        from federation.training.evaluation import binary_metrics, predict_proba

        self._holder("held_out_metrics")
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
            for s in self._holder("local_arrays").site_configs()
        }


def site_policy(site: SiteConfig) -> NodePolicy:
    """A simulated site's policy: the defaults of ``node init``, with its overrides."""
    return NodePolicy.default_for(site)
