"""A site answers a query: check, cost, reserve, compute, noise, suppress, commit, keep.

Nothing here knows about Flower: ``federation.site.analytics_task`` wraps these two
functions as the site's query handlers, and tests and simulations call them directly.
The request itself (``QueryRequest``) is protocol: federation/protocol/query_request.py.

Order of work at the site, and why:

1. the disclosure rules and the query are checked against the site's own data
   dictionary (a bad query is refused before any data is read or budget spent);
2. the data is read and fingerprinted; a released answer to the same question on the
   same data version is replayed for free (see ``cache``);
3. the noise is calibrated at the site's own delta; from here the site's one charged
   path (``charged_path.charged_release``) runs the release: per-request cap, reserve
   (or a refusal in the project's own numbers), then
4. the exact statistics are computed, noised with fresh OS entropy, derived and
   suppressed; a failure here aborts the reservation (nothing was released);
5. the spend is committed; with a true-count floor, an uncovered release is recorded
   too; the answer is kept for replays, then sent with the ledger's signed receipts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from federation.analytics.cache import CachedAnswer, ReleaseCache
from federation.analytics.cells import exact_cells
from federation.analytics.disclosure import DisclosureRuleError, DisclosureRules
from federation.analytics.errors import QueryError
from federation.analytics.noise import fresh_rng, noise_multiplier, query_event
from federation.analytics.query import Query
from federation.analytics.release import Release, make_release
from federation.data.dictionary import DataDictionary
from federation.data.errors import DataDictionaryError, DataValidationError
from federation.data.loader import fingerprint as data_fingerprint
from federation.data.loader import load_site_data, read_site_bytes
from federation.errors import BudgetRefused, InternalFault, InvalidRequest, PolicyRefused
from federation.protocol.query_request import QueryRequest
from federation.site.charged_path import Charge, Declared, Ran, charged_release
from federation.site.config import disclosure_rules
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger, LedgerError
from privacy_budgets.mechanisms import describe_event
from privacy_budgets.records import utc_now


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
        raise InternalFault(f"analytics need the site's data dictionary: {err}") from None
    try:
        query = request.query.check(dictionary=dictionary)
    except QueryError as err:  # about the query and the public dictionary: sent as it is
        raise InvalidRequest(str(err), public=str(err)) from None
    return _Checked(query=query, rules=rules, dictionary=dictionary)


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
        raise InternalFault(f"the site's data did not validate: {err}") from None
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger, ReleaseCache(site.analytics_cache_dir) as cache:
        delta = _delta(ledger, site)
        multiplier = noise_multiplier(query=query, delta=delta)
        event = query_event(query=query, noise_multiplier=multiplier)
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
            exact = exact_cells(query=query, frame=data.frame, dictionary=checked.dictionary)
            release = make_release(
                query=query,
                exact=exact,
                noise_multiplier=multiplier,
                rules=rules,
                rng=fresh_rng(),
                site_id=site.site_id,
            )
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

    A question already answered on this data version would be replayed: it costs 0.
    Reads the data file's bytes only to fingerprint them (no value is computed).
    """
    checked = _check(request, site)
    query = checked.query
    try:
        version = data_fingerprint(content=read_site_bytes(path=site.data_path), dictionary=checked.dictionary)
    except (DataValidationError, DataDictionaryError) as err:
        raise InternalFault(str(err)) from None
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger, ReleaseCache(site.analytics_cache_dir) as cache:
        delta = _delta(ledger, site)
        multiplier = noise_multiplier(query=query, delta=delta)
        event = query_event(query=query, noise_multiplier=multiplier)
        key = cache.key(query=query, project=request.project, fingerprint=version, rules=checked.rules, delta=delta)
        replay = key in cache  # the key holds the data version: changed data never replays
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
        "delta": estimate.delta,
        "noise_multiplier": multiplier,
        "mechanism": describe_event(event),
        "project_total_after": spent_now if replay else estimate.project_total_after,
        "project_remaining_after": None if replay else estimate.project_remaining_after,
        "dataset_remaining_after": None if replay else estimate.dataset_remaining_after,
        "fits": True if replay else estimate.fits and not over_request_cap,
        "binding": ""
        if replay
        else (
            f"the site's cap of {site.max_epsilon_per_request:g} per request" if over_request_cap else estimate.binding
        ),
        "min_cell_size": checked.rules.min_cell_size,
    }
