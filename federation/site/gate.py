"""The site's policy gate: what it checks before any handler may touch the data.

In order: the node is not paused; its ledger is not behind any head it recorded
elsewhere (anchors.py: audit log, replay cache, key folder, the board's checkpoint; the
one place every request passes, so a replayed answer and a query's price are refused
on a rolled-back ledger as a fresh release is); the request is not past its deadline (the
message's own time to live, or its run's ``run-deadline``: a site never serves a
message the coordinator stopped waiting for, so a cancelled or abandoned run stays
stopped here whatever the coordinator does); the task kind is one the site serves and its
policy allows; the request can be read (it names its project); who asks: a
researcher's signature, their approval in the ledger, the request's expiry and that it
is not replayed (authorization.py; required by ``[policy] require_signed_requests``);
the project has an allocation in the site's ledger (fail closed). What a request costs, and whether
that fits the ledger and the site's per-request cap, depends on parameters the
handler computes itself (its noise plan, its data's size): the handlers check that
at the moment they reserve (training_task.py, range_task.py, query_answers.py with
request_cap.py). Cell and cohort sizes are the analytics' disclosure control
(federation/analytics/disclosure.py: noisy-count suppression, so the refusal itself
stays inside the DP guarantee); a training cohort below the minimum is refused by the
training handler once it knows its row count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.errors import (
    BudgetRefused,
    InternalFault,
    InvalidRequest,
    PausedRefused,
    PolicyRefused,
    Refused,
    RequestExpired,
)
from federation.protocol.request_info import RequestInfo
from federation.protocol.task_kinds import KNOWN_TASKS, policy_allows
from federation.site.anchors import refuse_if_behind
from federation.site.authorization import Researcher, check_authorization
from federation.site.config import NodePolicy
from federation.site.ledger_keys import open_site_ledger
from federation.site.pause import read_pause
from federation.site.site_config import SiteConfig
from privacy_budgets.errors import PrivacyBudgetError


@dataclass(frozen=True)
class GateDecision:
    """Allowed (no ``refusal``), or refused: the refusal's class gives its kind
    (PausedRefused, PolicyRefused, BudgetRefused; InternalFault for a node that cannot
    read its own policy) and its message the reason."""

    refusal: Refused | InternalFault | None = None
    researcher: Researcher | None = None  # who signed the request (None: unsigned or not yet known)

    @property
    def allowed(self) -> bool:
        return self.refusal is None


ALLOW = GateDecision()
CLOCK_TOLERANCE_SECONDS = 5.0  # how far the coordinator's clock may run behind the site's


def check_request(
    *,
    info: RequestInfo,
    site: SiteConfig,
    policy: NodePolicy,
    config: dict[str, Any] | None = None,
    board_checkpoint: Path | None = None,
) -> GateDecision:
    """The gate's decision on one request; reads the pause switch, the ledger, its anchors
    and the replay memory of signed requests only. ``config`` is the message's config
    record (its signed request, if any); ``board_checkpoint`` is node.toml's
    ``[state] checkpoint``."""
    pause = read_pause(state_dir=site.state_dir)
    if pause is not None:
        return GateDecision(
            PausedRefused(
                f"site {site.site_id} is {pause.describe()}. It serves no task until its IT runs "
                "`workbench node resume --config node.toml`.",
                # who paused it and why are the site's business
                public=f"site {site.site_id} is paused by its IT and serves no task until it is resumed.",
            )
        )
    try:
        refuse_if_behind(site, board_checkpoint=board_checkpoint)
    except InternalFault as err:  # LedgerBehind among them: which head and where stay in the audit log
        return GateDecision(err)
    if info.expired(now=time.time(), tolerance=CLOCK_TOLERANCE_SECONDS):
        when = datetime.fromtimestamp(info.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = (
            f"site {site.site_id} serves no stale request: this {info.kind} request (run {info.run_id}) "
            f"expired at {when}: {info.expires_why}. Nothing was run or charged. Start a new study to go on."
        )
        return GateDecision(
            RequestExpired(
                text,
                public=text,
            )
        )
    if info.kind not in KNOWN_TASKS:
        text = f"unknown task {info.kind!r}; this site serves {', '.join(sorted(KNOWN_TASKS))}."
        return GateDecision(PolicyRefused(text, public=text))
    if not policy_allows(allowed=policy.allowed_tasks, kind=info.kind):
        text = (
            f"site {site.site_id} does not allow {info.kind} tasks; its policy allows "
            f"{', '.join(policy.allowed_tasks)}. Ask the site whether the study may run it."
        )
        return GateDecision(PolicyRefused(text, public=text))
    if info.problem is not None:
        return GateDecision(InvalidRequest(info.malformed_reason, public=info.malformed_reason))
    try:
        researcher = check_authorization(
            kind=info.kind,
            config=dict(config or {}),
            project=info.project,
            site=site,
            required=policy.require_signed_requests,
        )
    except (Refused, InternalFault) as err:
        return GateDecision(err)
    decision = _allocation(info=info, site=site)
    return GateDecision(decision.refusal, researcher=researcher)


def _allocation(*, info: RequestInfo, site: SiteConfig) -> GateDecision:
    project, dataset = info.project, site.dataset
    fix = (
        f"The site's ethics board allocates a budget with `workbench budget allocate --ledger "
        f"{site.ledger_path} --dataset {dataset} --project {project} --epsilon E --actor NAME --reason TEXT`."
    )
    public = (
        f"project '{project}' has no allocation at site {site.site_id}, so nothing may be released for it "
        "(fail closed). Fix: the site's ethics board allocates the project a budget there."
    )
    if not site.ledger_path.exists():
        return GateDecision(
            BudgetRefused(
                f"site {site.site_id} has no privacy ledger yet, so project '{project}' has no allocation "
                f"on dataset '{dataset}' and nothing may be released for it (fail closed). {fix}",
                public=public,
            )
        )
    try:
        with open_site_ledger(site, create=False) as ledger:
            allocation = ledger.allocation(dataset=dataset, project=project)
    except (PrivacyBudgetError, OSError) as err:
        # The node's own trouble (its disk, its permissions, a damaged file), not a budget
        # decision: refused as an error, so the alert and the coordinator say what it is.
        return GateDecision(InternalFault(f"site {site.site_id} cannot read its ledger, so it serves nothing: {err}"))
    if allocation is None:
        return GateDecision(
            BudgetRefused(
                f"project '{project}' has no allocation on dataset '{dataset}' at site {site.site_id}, "
                f"so nothing may be released for it (fail closed). {fix}",
                public=public,
            )
        )
    return ALLOW
