"""Real hospital nodes through a running coordinator whose folder is on this machine.

>>> wb = Workbench.connect(coordinator="coordinator/", dictionary="data_dictionary.json",  # doctest: +SKIP
...                        researcher="~/.ssh/researcher")
>>> result = wb.train(target_epsilon=1.0, rounds=3, project="cardio")                     # doctest: +SKIP
>>> wb.budget()                                                                            # doctest: +SKIP

The coordinator's operator works here: each study or query batch, signed by the
researcher, is written into the coordinator's run folder and started as a Flower run
(``federation.coordinator.study_runs``, the same path the study service takes for a
researcher elsewhere); what the deployed ServerApp writes is read back round by round.
This back end sees what the coordinator sees: the sites' replies and their signed spend
receipts, never a ledger. ``budget()`` is therefore the coordinator's MIRROR of receipts;
each site's own ledger stays the source of truth (``workbench budget reconcile``).

When a site refuses a round (paused, out of budget, policy), the study stops at that
round with the site's reason in ``TrainingResult.stopped_reason``: the sites of a study
were approved together, and one should not silently drop out. A study that stops for
any other reason stops its Flower run too, and says what each site was charged
(``charges``, from the run's journal of signed receipts): Ctrl-C (``StudyCancelled``),
its ``timeout`` or a site that does not answer within ``site_timeout``
(``SiteUnreachable``), the coordinator stopped mid-study (``SiteUnreachable``),
``workbench study cancel`` from elsewhere. A run that no client follows any more (a
killed notebook) stops on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from federation.coordinator import study_runs
from federation.coordinator.events import RoundReport
from federation.coordinator.registry import registered_nodes
from federation.coordinator.run_folder import RunFolder
from federation.coordinator.superlink import Coordinator, CoordinatorError, CoordinatorUnreachable
from federation.data.dictionary import DataDictionary
from workbench.backends.base import ASK, BUDGET, PLAN_TRAINING, QUERY_COST, TRAIN, RunOptions, TrainingRun
from workbench.backends.mirror import budget_frame, history_frame
from workbench.errors import SiteUnreachable, StudyCancelled, StudyFailed, StudyRefused, refused_paragraph

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


@contextmanager
def as_workbench_errors() -> Iterator[None]:
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


class CoordinatorFolderBackend:
    """Studies and query batches run through the coordinator folder's SuperLink."""

    capabilities = frozenset({TRAIN, ASK, QUERY_COST, BUDGET, PLAN_TRAINING})  # planning: from noisy counts
    schema = None  # a connected study encodes features from the public dictionary only

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
        self._n_sites = sites
        self._signer = signer

    @classmethod
    def open(
        cls,
        *,
        coordinator: str | Path,
        dictionary: str | Path | DataDictionary | None = None,
        sites: int | None = None,
        researcher: str | Path | Signer | None = None,
        passphrase: str | None = None,
    ) -> CoordinatorFolderBackend:
        """The running coordinator in ``coordinator`` (its folder); see ``Workbench.connect``."""
        signer = None
        if researcher is not None:
            from workbench.researcher import researcher_signer

            signer = (
                researcher if hasattr(researcher, "sign") else researcher_signer(key=researcher, passphrase=passphrase)
            )
        opened = study_runs.open_coordinator(coordinator)
        if opened.running_pid() is None:
            raise CoordinatorUnreachable(
                f"the SuperLink of {opened.folder} is not running; start it with "
                f"`workbench coordinator start --folder {opened.folder}`."
            )
        if dictionary is not None and not isinstance(dictionary, DataDictionary):
            dictionary = DataDictionary.load(Path(dictionary))
        if sites is not None and (isinstance(sites, bool) or not isinstance(sites, int) or sites < 1):
            raise ValueError(f"sites must be a whole number >= 1 (how many sites a study waits for); got {sites!r}.")
        return cls(coordinator=opened, dictionary=dictionary, sites=sites, signer=signer)

    # --- the protocol ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"the coordinator at {self.coordinator.address} (folder {self.coordinator.folder})"

    @property
    def signer(self) -> Signer | None:
        """The researcher's signer; the coordinator only relays its signature (None: unsigned,
        and sites that require signed requests refuse)."""
        return self._signer

    @property
    def n_sites(self) -> int:
        """How many sites a study waits for: as given, else every registered site."""
        if self._n_sites is not None:
            return self._n_sites
        registered = len(registered_nodes(self.coordinator))
        if registered == 0:
            raise CoordinatorError(
                f"no site is registered with the coordinator in {self.coordinator.folder}; register each "
                "site's key with `workbench coordinator register-node KEY.pub --name SITE --folder "
                f"{self.coordinator.folder}`."
            )
        return registered

    def sites(self) -> pd.DataFrame:
        nodes = registered_nodes(self.coordinator)
        return pd.DataFrame(
            [{"site": n.name, "node_id": n.node_id, "registered_at": n.registered_at} for n in nodes.values()],
            columns=["site", "node_id", "registered_at"],
        )

    def prepare_project(self, *, project: str, epsilon: float | None, reason: str) -> None:
        """Nothing: each site's ethics board allocates and approves at the site; a site
        without an allocation or an approval of the researcher's key refuses, with why."""

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
        if encoder is None:  # the front door asks for a dictionary first; said again for a direct caller
            raise ValueError("a connected study encodes features from the public data dictionary: pass its encoder.")
        with as_workbench_errors():
            run = study_runs.start_study(
                coordinator=self.coordinator,
                spec_config=spec.to_config(),
                encoder_json=encoder.to_json(),
                authorization=authorization,
                n_sites=self.n_sites,
                site_timeout=options.site_timeout,
                timeout=options.timeout,
                prompt_grid=options.prompt_replies,
                unfollowed_after=options.unfollowed_after,
            )
        if options.on_start is not None:
            options.on_start(spec.run_id)

        def round_finished(report: RoundReport) -> None:
            observer.round_finished(report)
            if verbose:
                print(f"round {report.round}/{report.rounds} ({report.seconds:.1f} s)")

        with as_workbench_errors():
            outcome = study_runs.follow_study(
                run=run, timeout=options.timeout, on_round=round_finished, on_wait=observer.waiting
            )
            if outcome.get("stopped_reason"):
                observer.study_stopped(outcome["stopped_reason"])
            finished = study_runs.study_outcome(run=run, outcome=outcome)
        import torch

        arrays = study_runs.model_arrays(folder=run.folder)
        return TrainingRun(
            state_dict={name: torch.from_numpy(array) for name, array in arrays.items()},
            encoder=encoder,
            receipts=list(finished.receipts),
            stopped_reason=finished.stopped_reason,
            completed_rounds=sum(1 for r in finished.rounds if any(s.status == "ok" for s in r.train)),
            charges=list(finished.charges),
        )

    def run_queries(self, *, requests: list[QueryRequest], verbose: bool, timeout: float) -> list[list[SiteQueryReply]]:
        """The batch in one Flower run; noise, suppression and the charge are each site's own."""
        answers, _ = self._batch(requests=requests, costs=False, timeout=timeout)
        return list(answers or [])

    def query_costs(self, *, queries: list[Query], project: str, timeout: float) -> pd.DataFrame:
        """Each site's ``query:cost`` handler, in one Flower run; nothing is run or spent."""
        import uuid

        from workbench.analytics import signed_requests

        requests = signed_requests(items=queries, project=project, run_id=uuid.uuid4().hex[:12], signer=self._signer)
        _, costs = self._batch(requests=requests, costs=True, timeout=timeout)
        return costs

    def _batch(self, *, requests: list[QueryRequest], costs: bool, timeout: float) -> tuple[list | None, Any]:
        with as_workbench_errors():
            run = study_runs.start_queries(
                coordinator=self.coordinator, requests=requests, n_sites=self.n_sites, costs=costs, timeout=timeout
            )
            return study_runs.await_queries(run=run, timeout=timeout)

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
        """Per site, dataset and project: the epsilon the sites' receipts report (the mirror;
        see ``workbench.backends.mirror.budget_frame``)."""
        return budget_frame(self.receipts())

    def budget_history(self) -> pd.DataFrame:
        """Every spend the sites' receipts report, in each site's ledger order (the mirror)."""
        return history_frame(self.receipts())
