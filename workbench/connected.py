"""Studies against a real coordinator: the hospitals run nodes, the coordinator a SuperLink.

>>> wb = Workbench.connect(coordinator="coordinator/", dictionary="data_dictionary.json")  # doctest: +SKIP
>>> result = wb.train(target_epsilon=1.0, rounds=3, project="cardio")                     # doctest: +SKIP
>>> wb.budget()                                                                            # doctest: +SKIP

The workbench runs on the coordinator's machine: it writes a study file into the
coordinator folder, starts a Flower run (``flwr run`` with the study's app bundle,
federation/app_bundle), and reads back what the deployed ServerApp writes into the
run folder, round by round. It sees what the coordinator sees: the sites' replies
and their signed spend receipts, never a ledger. ``budget()`` is therefore the
coordinator's MIRROR of receipts; each site's own ledger stays the source of truth
(reconcile them with ``privacy_budgets.reconciliation.reconcile``).

When a site refuses a round (paused, out of budget, policy), the study stops at
that round with the site's reason in ``TrainingResult.stopped_reason``: the sites
of a study were approved together, and one should not silently drop out.

A study that stops for any other reason stops its Flower run too, and says what each
site was charged (``charges``, from the run's journal of signed receipts) and what
could not be confirmed: Ctrl-C (``StudyCancelled``), its ``timeout`` or a site that
does not answer within ``site_timeout`` (``SiteUnreachable``), the coordinator stopped
mid-study (``SiteUnreachable``), ``cancel_study`` from elsewhere. While it waits, the
progress bar (and ``on_wait``) names each site that has not answered and for how long.
A run that no client follows any more (a killed notebook) stops on its own after
``UNFOLLOWED_AFTER_SECONDS``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from federation.coordinator import study_runs
from federation.coordinator.events import RoundReport
from federation.coordinator.registry import registered_nodes
from federation.coordinator.run_folder import RunFolder
from federation.coordinator.superlink import Coordinator, CoordinatorError, CoordinatorUnreachable
from federation.data.dictionary import DataDictionary
from federation.data.errors import DataDictionaryError
from federation.errors import InternalFault
from federation.protocol.authorization import sign_study
from federation.protocol.spec import TrainingSpec, refuse_site_owned
from federation.training.features import FeatureEncoder
from workbench.errors import (
    NotAvailable,
    SiteUnreachable,
    StudyCancelled,
    StudyRefused,
    WorkbenchError,
    refused_paragraph,
)
from workbench.progress import ProgressObserver

if TYPE_CHECKING:
    from federation.analytics.query import Query
    from privacy_budgets.signatures import Signer
    from workbench.analytics import QueryBuilder
    from workbench.description import Description
    from workbench.query_results import QueryResult, QueryResults
from workbench.results import TrainingResult

UNFOLLOWED_AFTER_SECONDS = study_runs.UNFOLLOWED_AFTER_SECONDS  # a run no client follows stops on its own after this
CANCEL_GRACE_SECONDS = study_runs.CANCEL_GRACE_SECONDS  # how long a cancel waits for the ServerApp to say it stopped
APP_BUNDLE = study_runs.APP_BUNDLE
# The machinery lives at the coordinator (federation/coordinator/study_runs.py), where the
# study service uses it too; these names stay for `workbench study cancel` and its callers.
cancel_run = study_runs.cancel_run
cancel_study = study_runs.cancel_study
_open_coordinator = study_runs.open_coordinator


class StudyFailed(WorkbenchError, InternalFault, RuntimeError):
    """The coordinator's ServerApp failed; the message carries its error."""


@contextmanager
def _as_workbench_errors() -> Iterator[None]:
    """The coordinator's run errors, as the notebook user's (same message, same charges)."""
    try:
        yield
    except study_runs.RunCancelled as err:
        raise StudyCancelled(str(err), charges=err.charges) from None
    except study_runs.RunRefused as err:
        raise StudyRefused(refused_paragraph(stopped_reason=err.stopped_reason), charges=err.charges) from None
    except study_runs.RunUnreachable as err:
        raise SiteUnreachable(str(err), charges=err.charges) from None
    except study_runs.RunFailed as err:
        raise StudyFailed(str(err), charges=err.charges) from None


class ConnectedWorkbench:
    """The study methods of ``Workbench.simulate(...)``, against a running coordinator."""

    def __init__(
        self,
        *,
        coordinator: Coordinator,
        dictionary: DataDictionary | None,
        sites: int | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.dictionary = dictionary
        self._sites = sites
        #: The researcher's signer: every study and query batch is signed with it, and the
        #: coordinator only relays the signature (None: unsigned; sites that require
        #: signed requests refuse).
        self._signer = signer

    # --- looking ------------------------------------------------------------------

    @property
    def n_sites(self) -> int:
        """How many sites a study waits for: as given, else every registered site."""
        if self._sites is not None:
            return self._sites
        registered = len(registered_nodes(self.coordinator))
        if registered == 0:
            raise CoordinatorError(
                f"no site is registered with the coordinator in {self.coordinator.folder}; register each "
                "site's key with `workbench coordinator register-node KEY.pub --name SITE --folder "
                f"{self.coordinator.folder}`."
            )
        return registered

    @property
    def sites(self) -> pd.DataFrame:
        nodes = registered_nodes(self.coordinator)
        return pd.DataFrame(
            [{"site": n.name, "node_id": n.node_id, "registered_at": n.registered_at} for n in nodes.values()]
        )

    def receipts(self) -> list[dict[str, Any]]:
        """Every spend receipt the coordinator holds (its mirror), oldest run first.

        A replayed analytics answer comes back with the receipt of its first release
        (the proof of what it cost); the mirror keeps each signed entry once. A run that
        did not finish (cancelled, a site or the coordinator stopped) counts with the
        receipts its journal holds: a site's spending is mirrored whatever stopped the study.
        """
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, int]] = set()
        for folder in sorted(self.coordinator.runs_dir.glob("*/"), key=lambda p: p.stat().st_mtime):
            for receipt in RunFolder(folder).receipts():
                key = (str(receipt.get("site_id")), int(receipt.get("seq", -1)))
                if key not in seen:
                    seen.add(key)
                    out.append(receipt)
        return out

    def budget(self) -> pd.DataFrame:
        """Per site, dataset and project: the epsilon the sites' receipts report (the mirror).

        ``epsilon_project`` is the latest value the site's ledger signed; the site's own
        ledger stays the source of truth. ``epsilon_dataset`` (every project's spending
        at the site) is not the requester's to know: a site's receipts leave it out, so
        it is NaN here unless a receipt stated it.
        """
        rows = [r for r in self.receipts() if r.get("kind") == "commit"]
        columns = ["site", "dataset", "project", "epsilon_project", "epsilon_dataset", "delta", "releases"]
        if not rows:
            return pd.DataFrame(columns=columns)
        frame = pd.DataFrame(rows).sort_values("seq")
        out = []
        for (site, dataset, project), g in frame.groupby(["site_id", "dataset", "project"], sort=True):
            last = g.iloc[-1]
            out.append(
                {
                    "site": site,
                    "dataset": dataset,
                    "project": project,
                    "epsilon_project": float(last["project_epsilon_after"]),
                    "epsilon_dataset": _float_or_nan(last.get("dataset_epsilon_after")),
                    "delta": float(last["delta"]),
                    "releases": len(g),
                }
            )
        return pd.DataFrame(out, columns=columns)

    def budget_history(self) -> pd.DataFrame:
        """Every spend the sites' receipts report, in each site's ledger order (the mirror)."""
        columns = ["site", "seq", "time", "kind", "project", "epsilon_dataset", "epsilon_project", "limit", "purpose"]
        rows = [
            {
                "site": r["site_id"],
                "seq": r["seq"],
                "time": r.get("time", ""),
                "kind": r["kind"],
                "project": r["project"],
                "epsilon_dataset": r.get("dataset_epsilon_after"),
                "epsilon_project": r.get("project_epsilon_after"),
                "limit": None,
                "purpose": r.get("purpose", ""),
            }
            for r in self.receipts()
            if r.get("kind") == "commit"
        ]
        return pd.DataFrame(rows, columns=columns).sort_values(["site", "seq"], ignore_index=True)

    def plot_budget(self, *, axes: Any = None):
        """Burn-down per site from the receipts the coordinator holds (caps live at the
        sites: their ethics board's report shows them)."""
        from workbench.burn_down import plot_burn_down

        return plot_burn_down(self.budget_history(), axes=axes)

    def report(self, *, out: str | Path | None = None) -> None:
        """The ethics board's report is made where the ledger is: at each hospital."""
        raise NotAvailable(
            "Each hospital's ledger stays at the hospital, so its report is made there: "
            "`workbench budget report --ledger STATE/ledger.sqlite --out report.html` (the ledger path is in "
            "the node's node.toml). Here, wb.budget() and wb.plot_budget() show the coordinator's mirror "
            "of the sites' signed receipts, which the board can reconcile with each ledger "
            "(`workbench budget reconcile`)."
        )

    def plan_training(self, **_: Any) -> None:
        """Planning needs each site's row count, which only the site knows exactly."""
        raise NotAvailable(
            "A connected federation plans at the sites: each hospital calibrates its own noise for the "
            "whole study from its own row count when the study starts, and refuses a study that does not "
            "fit its cap before touching its data. What to do: run wb.describe() for each site's (noisy) "
            "size, and plan on a simulation of that size (Workbench.simulate(...).plan_training(...))."
        )

    def encoder(self, *, target: str | None = None) -> FeatureEncoder:
        from workbench.session import with_target

        if self.dictionary is None:
            raise DataDictionaryError(
                "a connected study encodes features from the public data dictionary; pass "
                "dictionary='data_dictionary.json' to Workbench.connect."
            )
        dictionary = with_target(self.dictionary, target) if target else self.dictionary
        return FeatureEncoder.from_dictionary(dictionary=dictionary)

    # --- doing --------------------------------------------------------------------

    def train(
        self,
        *,
        target_epsilon: float,
        rounds: int,
        project: str | None = None,
        target: str | None = None,
        verbose: bool = False,
        on_round: Any = None,
        timeout: float = 1800.0,
        reply_timeout: float | None = None,
        site_timeout: float = 600.0,
        prompt_replies: bool = True,
        on_wait: Any = None,
        on_start: Any = None,
        unfollowed_after: float = UNFOLLOWED_AFTER_SECONDS,
        **hyperparameters: Any,
    ) -> TrainingResult:
        """Train across the connected sites with DP-SGD at every site.

        Each site's ledger must already hold an allocation for ``project`` (its
        ethics board grants it at the site); a site without one refuses, and the
        study stops with its reason. ``timeout`` bounds the whole study (the sites
        refuse its messages after it, too); ``site_timeout`` (``reply_timeout``, its
        older name) is how long the coordinator waits for a site to connect or reply
        before it names the site as failed and stops the study. While it waits, the
        progress bar and ``on_wait(text)`` name each site that has not answered, and
        for how long. Ctrl-C cancels the study: its Flower run is stopped and
        ``StudyCancelled`` lists what each site was charged. ``on_start(run_id)`` is
        told the run's id (for ``workbench study cancel``). ``prompt_replies=False`` uses
        Flower's own Grid, which collects replies every 3 s (for comparison).
        """
        from federation.training.models import build_model

        if reply_timeout is not None:
            site_timeout = reply_timeout
        refuse_site_owned(hyperparameters)
        project = project or f"study-{uuid.uuid4().hex[:6]}"
        spec = TrainingSpec(project=project, target_epsilon=target_epsilon, rounds=rounds, **hyperparameters)
        encoder = self.encoder(target=target)
        authorization = (
            None
            if self._signer is None
            else sign_study(
                self._signer,
                project=project,
                run_id=spec.run_id,
                spec_config=spec.to_config(),
                encoder_json=encoder.to_json(),
                max_rounds=spec.rounds,
                expires_in=_expiry(timeout),
            )
        )
        run = study_runs.start_study(
            coordinator=self.coordinator,
            spec_config=spec.to_config(),
            encoder_json=encoder.to_json(),
            authorization=authorization,
            n_sites=self.n_sites,
            site_timeout=site_timeout,
            timeout=timeout,
            prompt_grid=prompt_replies,
            unfollowed_after=unfollowed_after,
        )
        if on_start is not None:
            on_start(spec.run_id)
        observer = ProgressObserver(rounds=rounds, on_round=on_round, on_wait=on_wait)

        def round_finished(report: RoundReport) -> None:
            observer.round_finished(report)
            if verbose:
                print(f"round {report.round}/{report.rounds} ({report.seconds:.1f} s)")

        try:
            with _as_workbench_errors():
                outcome = study_runs.follow_study(
                    run=run, timeout=timeout, on_round=round_finished, on_wait=observer.waiting
                )
                if outcome.get("stopped_reason"):
                    observer.study_stopped(outcome["stopped_reason"])
        finally:
            observer.close()
        with _as_workbench_errors():
            finished = study_runs.study_outcome(run=run, outcome=outcome)
        model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
        import torch

        model.load_state_dict(torch.load(run.folder.model_path, weights_only=True))
        return TrainingResult(
            spec=spec,
            history=observer.history(),
            model=model,
            receipts=finished.receipts,
            stopped_reason=finished.stopped_reason,
            encoder=encoder,
            charges=finished.charges,
            pooled=observer.pooled_history(),
        )

    # --- analytics ------------------------------------------------------------------

    @property
    def query(self) -> QueryBuilder:
        """Build analytics queries, as on a simulation: ``wb.query.count(by="site", epsilon=0.1)``."""
        from workbench.analytics import QueryBuilder

        return QueryBuilder(dictionary=self.dictionary)

    def ask(
        self, queries: Query | list[Query], *, project: str, level: float = 0.95, timeout: float = 600.0
    ) -> QueryResult | QueryResults:
        """Answer queries at every connected site (noise, suppression and the charge are
        each site's own, behind its policy gate and in its audit log), in one Flower run."""
        from federation.analytics.estimates import z_value
        from workbench.analytics import _as_queries
        from workbench.query_results import QueryResult, QueryResults

        items = _as_queries(queries)
        z_value(level)  # a clear error before anything is sent
        requests, answers, _ = self._run_queries(items=items, project=project, costs=False, timeout=timeout)
        results = QueryResults(
            QueryResult.from_replies(request=request, replies=replies, level=level)
            for request, replies in zip(requests, answers, strict=False)
        )
        return results[0] if not isinstance(queries, list) else results

    def query_cost(self, queries: Query | list[Query], *, project: str, timeout: float = 600.0) -> pd.DataFrame:
        """What each query would cost at each site, as each site computes it; nothing is
        run or spent (the sites' ``query:cost`` handler)."""
        from workbench.analytics import _as_queries

        _, _, costs = self._run_queries(items=_as_queries(queries), project=project, costs=True, timeout=timeout)
        return costs

    def describe(self, *, project: str = "describe", epsilon: float = 0.05, level: float = 0.95) -> Description:
        """The schema (public) and each site's number of patients as a DP count charged to
        ``project`` at each site (whose ethics board must have allocated it)."""
        from workbench.description import Description, schema_rows, site_rows

        if self.dictionary is None:
            raise DataDictionaryError("describe() needs the public data dictionary: pass dictionary=... to connect.")
        counts = self.ask(
            self.query.count(by="site", epsilon=epsilon, label="patients per site"), project=project, level=level
        )
        sites = pd.DataFrame({"site": list(counts.sites["site"]), "dataset": ""})
        return Description(
            schema=schema_rows(dictionary=self.dictionary),
            sites=site_rows(sites=sites, counts=counts),
            counts=counts,
            project=project,
        )

    def _run_queries(self, *, items: list[Query], project: str, costs: bool, timeout: float):
        from workbench.analytics import signed_requests

        run_id = uuid.uuid4().hex[:12]
        requests = tuple(signed_requests(items=items, project=project, run_id=run_id, signer=self._signer))
        with _as_workbench_errors():
            run = study_runs.start_queries(
                coordinator=self.coordinator, requests=requests, n_sites=self.n_sites, costs=costs, timeout=timeout
            )
            answers, costs = study_runs.await_queries(run=run, timeout=timeout)
        return requests, answers, costs


def connect(
    *,
    coordinator: str | Path,
    dictionary: str | Path | DataDictionary | None = None,
    sites: int | None = None,
    researcher: str | Path | Signer | None = None,
    passphrase: str | None = None,
) -> ConnectedWorkbench:
    """A workbench on a running coordinator (its folder, from ``workbench coordinator init``).

    ``dictionary`` is the study's public data dictionary (its ranges encode the
    features); ``sites`` is how many sites a study waits for (default: every site
    registered with the coordinator). ``researcher`` is the researcher's private key
    (``workbench researcher init``; its passphrase is asked once, or ``passphrase``) or
    a signer: every study and query batch is signed with it, and each site serves it only
    when its ethics board approved that key for the project. Without one, requests go
    unsigned and sites that require signed requests (new nodes do) refuse them.
    """
    signer = None
    if researcher is not None:
        from workbench.researcher import researcher_signer

        signer = researcher if hasattr(researcher, "sign") else researcher_signer(key=researcher, passphrase=passphrase)
    opened = _open_coordinator(coordinator)
    if opened.running_pid() is None:
        raise CoordinatorUnreachable(
            f"the SuperLink of {opened.folder} is not running; start it with "
            f"`workbench coordinator start --folder {opened.folder}`."
        )
    if dictionary is not None and not isinstance(dictionary, DataDictionary):
        dictionary = DataDictionary.load(Path(dictionary))
    if sites is not None and (not isinstance(sites, int) or sites < 1):
        raise ValueError(f"sites must be a whole number >= 1 (how many sites a study waits for); got {sites!r}.")
    return ConnectedWorkbench(coordinator=opened, dictionary=dictionary, sites=sites, signer=signer)


def run_connected_study(
    *,
    coordinator: Path,
    dictionary: Path | None,
    out: Path,
    epsilon: float,
    rounds: int,
    project: str,
    target: str | None = None,
    delta: float = 1e-5,
    site_timeout: float = 600.0,
    timeout: float = 1800.0,
    echo=print,
    researcher: Path | None = None,
    passphrase: str | None = None,
    **hyperparameters: Any,
) -> dict[str, Any]:
    """``workbench study --coordinator``: one study on the connected sites; prints each
    round (and, while it waits, which site is late and for how long), writes
    ``summary.json`` and the coordinator's ``receipts.jsonl`` to ``out``. Whatever stops
    the study, ``summary.json`` and the terminal list what each site was charged; an
    error (cancelled, a site or the coordinator failed, every site refused) is raised
    after that, carrying the same charges."""
    import json

    from workbench.study import _round_line

    if dictionary is None:
        raise DataDictionaryError(
            "--dictionary is required with --coordinator: the study encodes features from the public "
            "data dictionary (the sites' data never leaves them)."
        )
    started = time.monotonic()
    wb = connect(coordinator=coordinator, dictionary=dictionary, researcher=researcher, passphrase=passphrase)
    echo(f"{wb.n_sites} sites through the coordinator at {wb.coordinator.address}")
    echo(
        f"private federated training: project {project!r}, epsilon {epsilon:g} per hospital at delta "
        f"{delta:g} (the project's total at each hospital), {rounds} rounds (Flower Deployment Engine, "
        "DP-SGD at every site)"
    )
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"project": project, "target_epsilon": epsilon, "delta": delta, "rounds_planned": rounds}

    def started_run(run_id: str) -> None:
        summary["run_id"] = run_id
        echo(
            f"run {run_id}: Ctrl-C cancels it; from elsewhere: `workbench study cancel {run_id} --coordinator "
            f"{wb.coordinator.folder}`"
        )

    def write_summary() -> None:
        summary["wall_seconds"] = round(time.monotonic() - started, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))

    try:
        result = wb.train(
            target_epsilon=epsilon,
            rounds=rounds,
            project=project,
            target=target,
            delta=delta,
            on_round=lambda r: echo(_round_line(r)),
            on_wait=echo,
            on_start=started_run,
            site_timeout=site_timeout,
            timeout=timeout,
            **hyperparameters,
        )
    except WorkbenchError as err:
        summary.update(
            {
                "status": type(err).__name__,
                "error": str(err),
                "charges": [c.to_json() for c in err.charges],
                "charges_from": "the sites' signed receipts that reached the coordinator (its mirror)",
            }
        )
        write_summary()
        raise
    echo(result._statement())
    if result.stopped_reason:
        echo(f"STOPPED: {result.stopped_reason}")
        echo("what each site was charged (its signed receipts, as the coordinator mirrors them):")
        for charge in result.charges:
            echo(f"  {charge.line()}")
    summary.update(
        {
            "status": "stopped" if result.stopped_reason else "finished",
            "rounds_completed": int(result.history["round"].max()) if not result.history.empty else 0,
            "stopped_reason": result.stopped_reason,
            "stop_kind": result.stop_kind,
            "epsilon_per_site": {
                r.site: {"project": r.epsilon_project, "dataset_total": r.epsilon_dataset}
                for r in result.epsilon().itertuples()
            },
            "charges": [c.to_json() for c in result.charges],
            "weighted": result.weighted().to_dict(orient="records"),
            "privacy_statement": result._statement(),
        }
    )
    write_summary()
    with (out / "receipts.jsonl").open("a") as fh:
        for receipt in result.receipts:
            fh.write(json.dumps(receipt) + "\n")
    echo(f"wrote {out / 'summary.json'} and {out / 'receipts.jsonl'} ({summary['wall_seconds']:.0f} s)")
    return summary


def _expiry(timeout: float) -> timedelta:
    """How long a study's signature stays valid: its whole timeout and an hour, within the
    document's limits (1 minute to 90 days)."""
    return min(max(timedelta(seconds=timeout) + timedelta(hours=1), timedelta(minutes=1)), timedelta(days=90))


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None or (isinstance(value, float) and value != value) else float(value)
