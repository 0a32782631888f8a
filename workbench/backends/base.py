"""The contract between the one ``Workbench`` and the places its studies run.

A back end gives primitives (run a training study, run a query batch, cost one, the
receipts and budget it can see, its sites and dictionary); ``workbench.session.Workbench``
writes ``train``, ``ask``, ``describe``... once on top of them. What a back end cannot do
is absent from its ``capabilities``, and ``ABSENT`` says once why and where it is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pandas as pd

if TYPE_CHECKING:
    from federation.analytics.query import Query
    from federation.coordinator.analytics import SiteQueryReply
    from federation.coordinator.range_phase import RangeFinding
    from federation.data.dictionary import DataDictionary
    from federation.protocol.authorization import Authorization
    from federation.protocol.query_request import QueryRequest
    from federation.protocol.spec import TrainingSpec
    from federation.site.site_config import SiteConfig
    from federation.training.features import FeatureEncoder
    from privacy_budgets.signatures import Signer
    from workbench.progress import ProgressObserver

# What every back end offers.
TRAIN = "train"
ASK = "ask"
QUERY_COST = "query_cost"
BUDGET = "budget"  # a simulation reads its ledgers; a coordinator mirrors the sites' receipts
# A simulation plans from each site's rows and ledger; a coordinator from noisy counts and receipts.
PLAN_TRAINING = "plan_training"
# Follow a study started from another (perhaps dead) kernel: only where it goes on without
# its notebook, at a coordinator's study service (FollowsStudies).
FOLLOW = "follow"
# What only a back end holding every site's configuration, ledger and table offers (HoldsSites).
LEDGERS = "ledgers"  # report, ledger, approvals, allocate: the ethics board's side
SITE_DATA = "site_data"  # held_out_metrics, local_arrays: the hospitals' rows themselves
TUNING = "tuning"  # plan_tuning, tune: a charged search plans from every site's ledger and rows

# Why a capability may be absent, and what to do instead: said here once.
ABSENT: dict[str, str] = {
    PLAN_TRAINING: (
        "planning needs each site's size (a noisy count from wb.describe()) and the project's signed receipts, "
        "which this back end does not give. Each hospital calibrates its own noise for the whole study from its "
        "own rows when the study starts, and refuses a study that does not fit its cap before touching its data. "
        "What to do: plan on a simulation of that size (Workbench.simulate(...).plan_training(...))."
    ),
    LEDGERS: (
        "each hospital's ledger stays at the hospital, so its ethics board decides and reports there: "
        "`workbench budget report --ledger STATE/ledger.sqlite --out report.html` (the ledger path is in the "
        "node's node.toml), `workbench budget propose ...` for allocations and approvals. Here, wb.budget() and "
        "wb.plot_budget() show the coordinator's mirror of the sites' signed receipts, which the board can "
        "reconcile with each ledger (`workbench budget reconcile`)."
    ),
    SITE_DATA: (
        "only a simulation holds every hospital's table; real hospitals send noisy counts only "
        "(result.history and result.weighted() are the estimates from them)."
    ),
    FOLLOW: (
        "a study goes on without the notebook that started it only at a coordinator's study service "
        "(Workbench.connect(url=...)): a simulation runs in the notebook's own process, and a run started "
        "from the coordinator's folder stops on its own once no notebook follows it (RunOptions.unfollowed_after). "
        "What to do: run studies you may need to follow from another kernel through the study service."
    ),
    TUNING: (
        "a charged search plans every candidate from each site's ledger and row count, which stay at the "
        "hospitals. What to do: tune on a simulation of the same size (Workbench.simulate(...).plan_tuning/tune), "
        "or on synthetic hospitals from the public dictionary."
    ),
}

# The front door's methods that need more than every back end offers.
NEEDS: dict[str, str] = {
    "plan_training": PLAN_TRAINING,
    "report": LEDGERS,
    "ledger": LEDGERS,
    "approvals": LEDGERS,
    "allocate": LEDGERS,
    "site_configs": SITE_DATA,
    "held_out_metrics": SITE_DATA,
    "local_arrays": SITE_DATA,
    "studies": FOLLOW,
    "follow": FOLLOW,
    "plan_tuning": TUNING,
    "tune": TUNING,
    "tune_locally": TUNING,
}


def absent_message(*, method: str, capability: str, backend: str) -> str:
    """The one sentence for a method whose capability this back end lacks."""
    return f"wb.{method}() is not available on {backend}: {ABSENT[capability]}"


@dataclass(frozen=True)
class RunOptions:
    """How a study waits on sites that run elsewhere (a simulation runs here and does not wait).

    ``timeout`` bounds the whole study (its signature expires an hour after it);
    ``site_timeout`` is how long the coordinator waits for a site to connect or reply;
    ``on_wait(text)`` is told which site is late; ``on_start(run_id)`` the run's id (for
    ``workbench study cancel``); ``prompt_replies=False`` uses Flower's own Grid (replies
    collected every 3 s); a run that no client follows stops after ``unfollowed_after``.
    """

    timeout: float = 1800.0
    site_timeout: float = 600.0
    on_wait: Callable[[str], None] | None = None
    on_start: Callable[[str], None] | None = None
    prompt_replies: bool = True
    unfollowed_after: float = 60.0  # federation.coordinator.study_runs.UNFOLLOWED_AFTER_SECONDS

    @property
    def expiry(self) -> timedelta:
        """How long a study's signature stays valid: its timeout and an hour, within the
        signed document's limits (1 minute to 90 days)."""
        wanted = timedelta(seconds=self.timeout) + timedelta(hours=1)
        return min(max(wanted, timedelta(minutes=1)), timedelta(days=90))


@dataclass
class TrainingRun:
    """What a back end hands back from a training study; the front door builds the model
    and the ``TrainingResult`` from it."""

    state_dict: dict[str, Any]  # the trained weights (torch tensors)
    encoder: FeatureEncoder  # as the study encoded features (DP ranges may have completed it)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    stopped_reason: str = ""
    completed_rounds: int = 0
    study_dictionary: DataDictionary | None = None  # when ranges came from a DP query
    charges: list[Any] = field(default_factory=list)  # run_folder.SiteCharge per site, where known
    dataset_totals: dict[str, float] | None = None  # site -> every project's epsilon (ledger holders only)


@runtime_checkable
class Backend(Protocol):
    """The primitives every back end gives; ``Workbench`` writes the rest once."""

    #: What this back end offers beyond the protocol's core (names from this module).
    capabilities: frozenset[str]
    #: The public data dictionary (None: ranges are found by a DP query during training).
    dictionary: DataDictionary | None

    @property
    def name(self) -> str:
        """Where studies run, in words ("a simulation of 4 hospitals on this machine")."""

    @property
    def signer(self) -> Signer | None:
        """The researcher's signer: every study and query batch is signed with it."""

    def sites(self) -> pd.DataFrame:
        """One row per site (at least ``site`` and ``dataset``)."""

    def prepare_project(self, *, project: str, epsilon: float | None, reason: str) -> None:
        """What happens before a request for ``project`` (a simulated ethics board grants
        ``epsilon`` and approves the researcher; a real one decides at each site)."""

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
        """Run one training study, telling ``observer`` each round as it ends."""

    def run_queries(self, *, requests: list[QueryRequest], verbose: bool, timeout: float) -> list[list[SiteQueryReply]]:
        """Send one (signed) query batch to every site; each request's replies, in order."""

    def query_costs(self, *, queries: list[Query], project: str, timeout: float) -> pd.DataFrame:
        """What each query would cost at each site now, as each site computes it; nothing spent."""

    def receipts(self) -> list[dict[str, Any]]:
        """Every signed spend receipt this back end holds."""

    def budget(self) -> pd.DataFrame:
        """Per site and project: epsilon spent (and, where known, caps and what remains)."""

    def budget_history(self) -> pd.DataFrame:
        """Every spend, in each site's ledger order."""


@runtime_checkable
class HoldsSites(Protocol):
    """A back end that holds every site's configuration, ledger and table on this machine
    (a simulation): planning, tuning, the ethics board's reports and exact metrics come from it."""

    def site_configs(self) -> list[SiteConfig]:
        """Every site's configuration (its data file, state folder and policy overrides)."""

    def decide(self, *, site: SiteConfig, action: dict[str, Any], reason: str, proposed_by: str) -> None:
        """A decision of the site's (simulated) ethics board, applied to its ledger."""

    def run_local_tuning(self, *, config: dict[str, Any], authorization: Any, verbose: bool) -> list[Any]:
        """One local tuning (task ``tune``) sent to every site through the engine; each
        site's answer (``federation.coordinator.local_tuning.SiteTuning``)."""


@runtime_checkable
class FollowsStudies(Protocol):
    """A back end whose studies go on without their notebook (a coordinator's study
    service): a new kernel lists them and follows one to its end."""

    def studies(self) -> pd.DataFrame:
        """This researcher's own studies, newest first (study, project, started, status, rounds_done)."""

    def signed_study(self, study: str) -> tuple[TrainingSpec, FeatureEncoder]:
        """The study's spec and encoder as its researcher signed them (checked against the signature)."""

    def follow_training(
        self, *, study: str, encoder: FeatureEncoder, observer: ProgressObserver, verbose: bool
    ) -> TrainingRun:
        """Every event of ``study`` told to ``observer`` until its end; what ``run_training`` returns."""
