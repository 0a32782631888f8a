"""Real hospital nodes through a coordinator's study service, from the researcher's own machine.

>>> wb = Workbench.connect(url="https://coordinator.example.org:9443", identity="~/.ssh/id_ed25519_research",  # doctest: +SKIP
...                        ca="ca.crt", dictionary="data_dictionary.json")
>>> result = wb.train(target_epsilon=1.0, rounds=3, project="cardio")                                         # doctest: +SKIP
>>> result.model                                                                                              # doctest: +SKIP

Nothing of the coordinator's disk is needed: the service's URL, the coordinator's CA
certificate (``ca.crt``, the file every site has), the researcher's key and the public
data dictionary. The client (``workbench/service_client.py``) logs in by signing the
service's nonce; every study and query batch is signed here, relayed by the service and
checked again by every site. A study is followed through the service's events (the
progress bar and the live plot are the simulation's); a lost connection is followed again
where it stopped, since the study goes on at the coordinator; a notebook that died is
replaced by any other connected with the same key (``wb.studies()``, ``wb.follow(study=ID)``,
rebuilt from the spec and encoder the service stored, checked against the researcher's
signature). Results and the trained
weights come only to the researcher who started the study. ``budget()`` is the service's
mirror of the sites' signed receipts for this researcher's own projects; each site's
ledger stays the source of truth.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from federation.coordinator.query_file import answers_from_json
from federation.coordinator.run_folder import SiteCharge, round_from_json
from federation.data.dictionary import DataDictionary
from workbench.backends.base import ASK, BUDGET, FOLLOW, PLAN_TRAINING, QUERY_COST, TRAIN, RunOptions, TrainingRun
from workbench.backends.mirror import budget_frame, history_frame
from workbench.errors import SiteUnreachable, StudyCancelled, StudyFailed, StudyRefused, refused_paragraph
from workbench.service_client import ServiceClient, ServiceUnreachable

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

# How a study's end event turns into the notebook user's error (its status -> the class).
_ENDED_BADLY = {"unreachable": SiteUnreachable, "cancelled": StudyCancelled, "failed": StudyFailed}


class RemoteBackend:
    """Studies and query batches through a coordinator's study service at a URL."""

    capabilities = frozenset({TRAIN, ASK, QUERY_COST, BUDGET, PLAN_TRAINING, FOLLOW})
    schema = None  # a remote study encodes features from the public dictionary only

    def __init__(self, *, client: ServiceClient, dictionary: DataDictionary | None, sites: int | None = None) -> None:
        self.client = client
        self.dictionary = dictionary
        self._n_sites = sites

    @classmethod
    def open(
        cls,
        *,
        url: str,
        identity: str | Path | Signer | None,
        ca: str | Path | None,
        dictionary: str | Path | DataDictionary | None = None,
        sites: int | None = None,
        passphrase: str | None = None,
        timeout: float = 30.0,
    ) -> RemoteBackend:
        """Log in to the study service at ``url`` now (a service that is down, a CA that does
        not match or a key the service refuses is said here, before any study)."""
        if identity is None:
            raise ValueError(
                "the study service serves only researchers who log in with their key; got identity=None. Fix: "
                "pass identity='~/.ssh/id_ed25519_research' (made by `workbench researcher init`; the key your "
                "ethics boards approved)."
            )
        if ca is None:
            raise ValueError(
                f"the client checks that {url} is the coordinator's service with the coordinator's CA certificate; "
                "got ca=None. Fix: pass ca='ca.crt' (the coordinator's operator gives it; every site has the "
                "same file)."
            )
        if sites is not None and (isinstance(sites, bool) or not isinstance(sites, int) or sites < 1):
            raise ValueError(f"sites must be a whole number >= 1 (how many sites a study waits for); got {sites!r}.")
        if dictionary is not None and not isinstance(dictionary, DataDictionary):
            dictionary = DataDictionary.load(Path(dictionary).expanduser())
        client = ServiceClient(url=url, ca=ca, identity=identity, passphrase=passphrase, timeout=timeout)
        try:
            client.login()
        except BaseException:
            client.close()
            raise
        return cls(client=client, dictionary=dictionary, sites=sites)

    # --- the protocol ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"the study service at {self.client.url}"

    @property
    def signer(self) -> Signer:
        return self.client.signer

    def sites(self) -> pd.DataFrame:
        return self.client.sites()

    def prepare_project(self, *, project: str, epsilon: float | None, reason: str) -> None:
        """Nothing: each site's ethics board allocates and approves at the site."""

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
        if encoder is None or authorization is None:  # the front door gives both; said for a direct caller
            raise ValueError("a remote study is encoded from the public data dictionary and signed: pass both.")
        study = self.client.start_study(
            spec_config=spec.to_config(),
            encoder_json=encoder.to_json(),
            authorization=authorization,
            site_timeout=options.site_timeout,
            timeout=options.timeout,
            n_sites=self._n_sites,
        )
        if options.on_start is not None:
            options.on_start(study)
        return self.follow_training(study=study, encoder=encoder, observer=observer, verbose=verbose)

    # --- following a study from any kernel (FOLLOW) ---------------------------------

    def studies(self) -> pd.DataFrame:
        return self.client.studies()

    def signed_study(self, study: str) -> tuple[TrainingSpec, FeatureEncoder]:
        from federation.protocol.spec import TrainingSpec
        from federation.training.features import FeatureEncoder

        spec_config, encoder_json = self.client.signed_study(study)
        return TrainingSpec.from_config(spec_config), FeatureEncoder.from_json(encoder_json)

    def follow_training(
        self, *, study: str, encoder: FeatureEncoder, observer: ProgressObserver, verbose: bool
    ) -> TrainingRun:
        """The study's events from its first (the history is whole) to its end, then its
        model, charges and receipts; Ctrl-C cancels it at the coordinator."""
        trained: set[int] = set()

        def on_event(event: dict[str, Any]) -> None:
            if event["kind"] == "round":
                report = round_from_json(event["report"])
                if any(reply.status == "ok" for reply in report.train):
                    trained.add(report.round)
                observer.round_finished(report)
                if verbose:
                    print(f"round {report.round}/{report.rounds} ({report.seconds:.1f} s)")
            elif event["kind"] == "waiting":
                observer.waiting(event.get("waiting"))

        end = self._follow(study=study, on_event=on_event)
        charges = [_charge(c) for c in end.get("charges") or []]
        if end["status"] == "refused":
            raise StudyRefused(refused_paragraph(stopped_reason=end.get("stopped_reason") or ""), charges=charges)
        if end["status"] != "finished":
            error = _ENDED_BADLY.get(end["status"], StudyFailed)
            raise error(f"study {study}: {end.get('message', end['status'])}", charges=charges)
        if end.get("stopped_reason"):
            observer.study_stopped(end["stopped_reason"])
        import torch

        weights = self.client.model_weights(study) if end.get("model") else {}
        return TrainingRun(
            state_dict={name: torch.from_numpy(array.copy()) for name, array in weights.items()},
            encoder=encoder,
            receipts=list(end.get("receipts") or []),
            stopped_reason=str(end.get("stopped_reason") or ""),
            completed_rounds=len(trained),
            charges=charges,
        )

    def _follow(self, *, study: str, on_event: Any) -> dict[str, Any]:
        """The study's events to its end; Ctrl-C cancels it at the coordinator."""
        try:
            return self.client.follow(study, on_event=on_event)
        except KeyboardInterrupt:
            said = self.client.cancel(study)
            end = self.client.follow(study)
            raise StudyCancelled(
                f"study {study} was cancelled from this notebook: {said}.",
                charges=[_charge(c) for c in end.get("charges") or []],
            ) from None
        except ServiceUnreachable as err:
            raise SiteUnreachable(
                f"{err} Study {study} goes on at the coordinator without this notebook. What to do: once the "
                f"service answers, wb.follow(study='{study}') follows it to its end and returns its result "
                "(from any notebook that connects with your key; wb.studies() lists your studies)."
            ) from None

    def run_queries(self, *, requests: list[QueryRequest], verbose: bool, timeout: float) -> list[list[SiteQueryReply]]:
        """The signed batch through the service, in one Flower run at the coordinator."""
        answers, _ = answers_from_json(self.client.run_queries(requests, costs=False, timeout=timeout))
        return list(answers or [])

    def query_costs(self, *, queries: list[Query], project: str, timeout: float) -> pd.DataFrame:
        """Each site's ``query:cost`` handler, through the service; nothing is run or spent."""
        from workbench.analytics import signed_requests

        requests = signed_requests(items=queries, project=project, run_id=uuid.uuid4().hex[:12], signer=self.signer)
        return self.client.query_cost(requests, timeout=timeout)

    def receipts(self) -> list[dict[str, Any]]:
        """The service's mirror of the sites' signed receipts, for this researcher's projects."""
        return self.client.receipts()

    def budget(self) -> pd.DataFrame:
        return budget_frame(self.receipts())

    def budget_history(self) -> pd.DataFrame:
        return history_frame(self.receipts())


def _charge(data: dict[str, Any]) -> SiteCharge:
    return SiteCharge(
        site=str(data["site"]),
        rounds_charged=tuple(int(r) for r in data.get("rounds_charged") or ()),
        epsilon_project=None if data.get("epsilon_project") is None else float(data["epsilon_project"]),
        releases=int(data.get("releases") or 0),
        unconfirmed=tuple(str(s) for s in data.get("unconfirmed") or ()),
    )
