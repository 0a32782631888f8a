"""A site answers a query: check, cost, reserve, compute, noise, suppress, commit, keep.

Nothing here knows about Flower: ``federation.site.analytics_task`` wraps these two
functions as the site's query handlers, and tests and simulations call them directly.
The request itself (``QueryRequest``) is protocol: federation/protocol/query_request.py.

Order of work at the site, and why:

1. the disclosure rules and the query are checked against the site's own data
   dictionary and its analytics limits (a bad or oversized query is refused before any
   data is read, any privacy loss computed or any budget spent);
2. the data is read and fingerprinted; a released answer to the same question on the
   same data version is replayed for free (see ``cache``);
3. the noise is planned (its fixed-point grids) and calibrated at the site's own delta;
   from here the site's one charged path (``charged_path.charged_release``) runs the
   release: per-request cap, reservation of the exact mechanism (discrete Gaussian or
   discrete Laplace) in the site's ledger (or a refusal in the project's own numbers), then
4. the exact statistics are computed on the plan's grids, noised on the integers from a
   cryptographically secure source (federation/analytics/secure_noise.py), derived and
   suppressed; a failure here aborts the reservation (nothing was released);
5. the spend is committed; with a true-count floor, an uncovered release is recorded
   too; the answer is kept for replays, then sent with the ledger's signed receipts.

A refusal says what was refused, never what the data holds: a query's own values and
the public dictionary may be named; an error that may carry the site's data or its
file paths (the data failing validation, a failure while computing) is logged at the
site and the reply says only what failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from federation.analytics.cache import CachedAnswer, ReleaseCache
from federation.analytics.cells import exact_cells
from federation.analytics.disclosure import DisclosureRuleError, DisclosureRules
from federation.analytics.errors import NoiseError, QueryError
from federation.analytics.noise import NoisePlan, noise_multiplier, plan_noise
from federation.analytics.query import Query
from federation.analytics.release import Release, make_release
from federation.data.dictionary import DataDictionary
from federation.data.errors import DataDictionaryError, DataValidationError
from federation.data.loader import load_site_data
from federation.errors import BudgetRefused, InternalFault, InvalidRequest, PolicyRefused
from federation.protocol.query_request import QueryRequest
from federation.site.charged_path import Charge, Declared, Ran, charged_release
from federation.site.config import disclosure_rules
from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger, LedgerError, NoNoiseFits
from privacy_budgets.errors import fmt_epsilon
from privacy_budgets.mechanisms import describe_event
from privacy_budgets.records import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteAnswer:
    """One site's reply: the release, the receipts that prove its cost, and whether it
    was a replay (then ``epsilon`` is 0: nothing new was released)."""

    site_id: str
    query_id: str
    release: Release
    release_text: str
    receipts: list[dict[str, Any]] = field(default_factory=list)
    replay: bool = False
    epsilon: float = 0.0
    noise_multiplier: float = 0.0
    uncovered: bool = False


@dataclass(frozen=True)
class _Checked:
    query: Query
    rules: DisclosureRules
    dictionary: DataDictionary


def _check(request: QueryRequest, site: SiteConfig) -> _Checked:
    try:
        rules = disclosure_rules(site=site, query_min=request.query.min_cell_size)
    except DisclosureRuleError as err:
        raise PolicyRefused(f"site {site.site_id} is misconfigured: {err}") from None
    try:
        dictionary = DataDictionary.load(site.dictionary_path)
    except DataDictionaryError as err:
        # The message names the site's file: it stays in the site's audit log.
        raise InternalFault(
            f"site {site.site_id} cannot read its data dictionary: {err}",
            public=f"site {site.site_id} cannot read its data dictionary; its IT sees why in the site's audit log.",
        ) from None
    try:
        query = request.query.check(dictionary=dictionary)
        site.analytics_limits.check(query=query, dictionary=dictionary)
    except QueryError as err:  # the query's own values, the site's limits and the public dictionary only
        raise InvalidRequest(str(err), public=str(err)) from None
    return _Checked(query=query, rules=rules, dictionary=dictionary)


def _plan(checked: _Checked, site: SiteConfig, delta: float) -> NoisePlan:
    """The query's noise: its stated multiplier, or the one its epsilon calls for here."""
    try:
        multiplier = noise_multiplier(
            query=checked.query, delta=delta, minimum=site.analytics_limits.min_noise_multiplier
        )
        return plan_noise(query=checked.query, noise_multiplier=multiplier)
    except NoNoiseFits as err:
        words = f"no noise this site allows meets the query's epsilon {checked.query.epsilon:g}: {err}"
        raise InvalidRequest(words, public=words) from None
    except NoiseError as err:  # validation let a degenerate noise through: refuse, release nothing
        words = f"the query's noise would be degenerate: {err}"
        raise InvalidRequest(words, public=words) from None


def _delta(ledger: Ledger, site: SiteConfig) -> float:
    try:
        return ledger.dataset_delta(dataset=site.dataset)
    except LedgerError as err:
        raise BudgetRefused(str(err)) from None


def answer_query(*, request: QueryRequest, site: SiteConfig) -> SiteAnswer:
    """Answer ``request`` at ``site`` (see the module docstring), or raise a refusal
    (``federation.errors.Refused``) or an ``InternalFault`` (the site could not answer)."""
    checked = _check(request, site)
    query, rules = checked.query, checked.rules
    try:
        data = load_site_data(path=site.data_path, dictionary=checked.dictionary, site_id=site.site_id)
    except (DataValidationError, DataDictionaryError) as err:
        # Its message names a row and its value: the site's audit log keeps it, the reply does not.
        raise InternalFault(
            f"site {site.site_id} cannot answer: its data does not validate against its data dictionary: {err}",
            public=f"site {site.site_id} cannot answer: its data does not validate against its data dictionary "
            "(its IT sees where in the site's audit log).",
        ) from None
    with open_site_ledger(site) as ledger, ReleaseCache(site.analytics_cache_dir) as cache:
        delta = _delta(ledger, site)
        plan = _plan(checked, site, delta)
        multiplier = plan.noise_multiplier
        event = plan.event()
        cache.use_data_version(data.fingerprint)
        key = cache.key(query=query, project=request.project, fingerprint=data.fingerprint, rules=rules, delta=delta)
        kept = cache.get(key)
        if kept is not None:
            return SiteAnswer(
                site_id=site.site_id,
                query_id=query.query_id,
                release=Release.from_json(kept.release),
                release_text=kept.release,
                receipts=kept.receipts,
                replay=True,
                noise_multiplier=kept.noise_multiplier,
                uncovered=bool(rules.true_count_floor),
            )

        def run() -> Ran:
            try:
                exact = exact_cells(query=query, frame=data.frame, dictionary=checked.dictionary, grids=plan.statistics)
                release = make_release(query=query, exact=exact, plan=plan, rules=rules, site_id=site.site_id)
            except Exception as err:
                # The error may hold values of the data: the site's audit log keeps it, the reply does not.
                log.exception("site %s: %s failed after its reservation", site.site_id, query.query_id)
                raise InternalFault(
                    f"site {site.site_id} could not compute {query.describe()}: {type(err).__name__}: {err}",
                    public=f"site {site.site_id} could not compute {query.describe()}; nothing was released and "
                    "the reservation was aborted. Its IT sees why in the site's audit log.",
                ) from None
            declared = (_floor_declared(query, rules),) if rules.true_count_floor else ()
            return Ran(value=(release, release.to_text()), declared=declared)

        charged = charged_release(
            ledger=ledger,
            site=site,
            charge=Charge(
                project=request.project,
                actor=request.actor,
                event=event,
                purpose=f"analytics: {query.describe()} ({describe_event(event)})",
                run_id=request.run_id,
                query_id=query.query_id,
            ),
            run=run,
        )
        release, text = charged.value
        receipts = charged.receipts
        cache.put(
            key,
            CachedAnswer(
                release=text,
                receipts=receipts,
                released_at=utc_now(),
                run_id=request.run_id,
                noise_multiplier=multiplier,
            ),
        )
        return SiteAnswer(
            site_id=site.site_id,
            query_id=query.query_id,
            release=release,
            release_text=text,
            receipts=receipts,
            epsilon=charged.epsilon,
            noise_multiplier=multiplier,
            uncovered=bool(rules.true_count_floor),
        )


def _floor_declared(query: Query, rules: DisclosureRules) -> Declared:
    return Declared(
        what=(
            f"which cells of {query.query_id} hold fewer than {rules.true_count_floor} records "
            "(true counts): the suppression pattern of a true-count floor"
        ),
        purpose=f"analytics disclosure control: {query.describe()}",
        details={"query_id": query.query_id, "true_count_floor": rules.true_count_floor},
    )


def query_cost(*, request: QueryRequest, site: SiteConfig) -> dict[str, Any]:
    """What ``request`` would cost at ``site`` now, without running it or spending.

    Reads no data at all, not even to fingerprint it: whether the site's data changed is
    not the asker's to learn from a price. ``replay`` says whether this project holds a
    kept answer to the same question, released on the data version the site last
    answered from; asked again, it is replayed for free unless the site's data changed
    since (then it is answered afresh and charged ``epsilon_if_fresh``).
    """
    checked = _check(request, site)
    query = checked.query
    with open_site_ledger(site) as ledger, ReleaseCache(site.analytics_cache_dir) as cache:
        delta = _delta(ledger, site)
        plan = _plan(checked, site, delta)
        multiplier = plan.noise_multiplier
        event = plan.event()
        version = cache.data_version()
        key = cache.key(
            query=query, project=request.project, fingerprint=version or "", rules=checked.rules, delta=delta
        )
        replay = version is not None and key in cache
        estimate = ledger.cost(dataset=site.dataset, project=request.project, event=event)
        spent_now = ledger.spent(dataset=site.dataset, project=request.project)
    cap = site.max_epsilon_per_request
    over_request_cap = cap is not None and estimate.epsilon > cap * (1 + 1e-9)
    return {
        "site": site.site_id,
        "query_id": query.query_id,
        "query": query.label or query.describe(),
        "replay": replay,
        "epsilon": 0.0 if replay else estimate.epsilon,
        "epsilon_if_fresh": estimate.epsilon,
        "delta": estimate.delta,
        "noise_multiplier": multiplier,
        "mechanism": describe_event(event),
        "project_total_after": spent_now if replay else estimate.project_total_after,
        "project_remaining_after": None if replay else estimate.project_remaining_after,
        "fits": True if replay else estimate.fits and not over_request_cap,
        "binding": "" if replay else _binding_in_project_words(estimate, cap=cap, over_request_cap=over_request_cap),
        "min_cell_size": checked.rules.min_cell_size,
    }


def _binding_in_project_words(estimate: Any, *, cap: float | None, over_request_cap: bool) -> str:
    """What limits a priced query, in words that leave the site: the per-request cap or the
    project's own allocation; never the dataset's cap nor its total (other projects' spending)."""
    if over_request_cap:
        return f"the site's cap of {cap:g} per request"
    allocation = estimate.project_total_after + estimate.project_remaining_after
    if allocation <= 0:
        return f"project '{estimate.project}' has no allocation at this site (fail closed)"
    own = f"project allocation {fmt_epsilon(allocation)} (remaining after {fmt_epsilon(estimate.project_remaining_after)})"
    if estimate.fits or estimate.project_remaining_after < 0:
        return own
    return "the site's privacy limits on its dataset (the project's own allocation would allow it)"
