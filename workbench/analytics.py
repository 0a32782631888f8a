"""Analytics from a notebook: build queries, price them, ask them all in one run.

>>> wb.allocate(project="explore", epsilon=2.0)                                     # doctest: +SKIP
>>> q1 = wb.query.count(by="site", epsilon=0.2)                                     # doctest: +SKIP
>>> q2 = wb.query.mean(column="age", bounds=(18, 95), by="admission_type", epsilon=0.3)  # doctest: +SKIP
>>> wb.query_cost([q1, q2], project="explore")                                      # doctest: +SKIP
>>> count, age = wb.ask([q1, q2], project="explore")                                # doctest: +SKIP

Every ``wb.ask`` starts one run (in a simulation, Flower's simulation engine: about
25 s on two cores), so ask the questions of a notebook together; asking again costs nothing in privacy for
answers already released (they are replayed), but it does cost the engine's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from federation.analytics.errors import QueryError
from federation.analytics.filters import parse_where
from federation.analytics.query import Query
from federation.data.dictionary import DataDictionary
from federation.errors import InternalFault, Refused, refusal_kind
from federation.protocol.query_request import QueryRequest
from federation.site.query_answers import query_cost
from federation.site.site_config import SiteConfig
from privacy_budgets.signatures import Signer

Where = Mapping[str, Any] | Sequence[Sequence[Any]] | None
By = str | Sequence[str] | None


class QueryBuilder:
    """Makes queries checked against the public data dictionary (nothing runs here).

    Every method takes keyword arguments only: ``where`` (rows to keep, e.g.
    ``{"age": (">=", 65), "admission_type": ["emergency", "transfer"]}``), ``by`` (a
    categorical or binary column, a list of them, and/or "site" to show per-site rows;
    answers always come per site and pooled), the privacy (``epsilon=`` or
    ``noise_multiplier=``, and ``mechanism`` "gaussian" or "laplace"),
    ``min_cell_size`` (raise the sites' minimum for this query) and a ``label``.
    """

    def __init__(self, *, dictionary: DataDictionary | None) -> None:
        self._dictionary = dictionary

    def _make(self, *, kind: str, where: Where, by: By, label: str, **fields: Any) -> Query:
        if self._dictionary is None:
            raise QueryError(
                "Analytics need a data dictionary (public categories and ranges); this workbench "
                "has none. Write data_dictionary.json beside the site files."
            )
        by = () if by is None else ((by,) if isinstance(by, str) else tuple(by))
        query = Query(kind=kind, where=parse_where(where), by=by, label=label, **fields)
        return query.check(dictionary=self._dictionary)

    def count(
        self,
        *,
        where: Where = None,
        by: By = None,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        mechanism: str = "gaussian",
        min_cell_size: int | None = None,
        label: str = "",
    ) -> Query:
        """Number of patients (that pass ``where``), per stratum of ``by``."""
        return self._make(
            kind="count",
            where=where,
            by=by,
            label=label,
            epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            mechanism=mechanism,
            min_cell_size=min_cell_size,
        )

    def sum(
        self,
        *,
        column: str,
        bounds: tuple[float, float] | None = None,
        where: Where = None,
        by: By = None,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        mechanism: str = "gaussian",
        min_cell_size: int | None = None,
        label: str = "",
    ) -> Query:
        """Sum of ``column`` clipped to ``bounds`` (required, public)."""
        return self._make(
            kind="sum",
            column=column,
            bounds=bounds,
            where=where,
            by=by,
            label=label,
            epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            mechanism=mechanism,
            min_cell_size=min_cell_size,
        )

    def mean(
        self,
        *,
        column: str,
        bounds: tuple[float, float] | None = None,
        where: Where = None,
        by: By = None,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        mechanism: str = "gaussian",
        min_cell_size: int | None = None,
        label: str = "",
    ) -> Query:
        """Mean of ``column`` clipped to ``bounds`` (required, public): noisy sum / noisy count."""
        return self._make(
            kind="mean",
            column=column,
            bounds=bounds,
            where=where,
            by=by,
            label=label,
            epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            mechanism=mechanism,
            min_cell_size=min_cell_size,
        )

    def variance(
        self,
        *,
        column: str,
        bounds: tuple[float, float] | None = None,
        where: Where = None,
        by: By = None,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        mechanism: str = "gaussian",
        min_cell_size: int | None = None,
        label: str = "",
    ) -> Query:
        """Sample variance of ``column`` clipped to ``bounds`` (required, public)."""
        return self._make(
            kind="variance",
            column=column,
            bounds=bounds,
            where=where,
            by=by,
            label=label,
            epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            mechanism=mechanism,
            min_cell_size=min_cell_size,
        )

    def histogram(
        self,
        *,
        column: str,
        bounds: tuple[float, float] | None = None,
        bins: int | Sequence[float] | None = None,
        where: Where = None,
        by: By = None,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        mechanism: str = "gaussian",
        min_cell_size: int | None = None,
        label: str = "",
    ) -> Query:
        """Counts per category of a categorical/binary column, or per public bin of a
        numeric one (``bounds`` and ``bins``: a number of equal bins or the edges)."""
        return self._make(
            kind="histogram",
            column=column,
            bounds=bounds,
            bins=_bins(bins),
            where=where,
            by=by,
            label=label,
            epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            mechanism=mechanism,
            min_cell_size=min_cell_size,
        )

    def crosstab(
        self,
        *,
        columns: Sequence[str],
        where: Where = None,
        by: By = None,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        mechanism: str = "gaussian",
        min_cell_size: int | None = None,
        label: str = "",
    ) -> Query:
        """Counts per combination of two categorical/binary columns."""
        return self._make(
            kind="crosstab",
            columns=tuple(columns),
            where=where,
            by=by,
            label=label,
            epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            mechanism=mechanism,
            min_cell_size=min_cell_size,
        )

    def quantiles(
        self,
        *,
        column: str,
        bounds: tuple[float, float] | None = None,
        probabilities: Sequence[float] = (0.25, 0.5, 0.75),
        bins: int | Sequence[float] | None = None,
        where: Where = None,
        by: By = None,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        mechanism: str = "gaussian",
        min_cell_size: int | None = None,
        label: str = "",
    ) -> Query:
        """Quantiles of ``column`` read from a noisy histogram on a public grid over
        ``bounds`` (``bins`` equal bins, 50 by default): the answer's resolution is one bin."""
        return self._make(
            kind="quantiles",
            column=column,
            bounds=bounds,
            bins=_bins(bins),
            probabilities=tuple(probabilities),
            where=where,
            by=by,
            label=label,
            epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            mechanism=mechanism,
            min_cell_size=min_cell_size,
        )

    def survival(
        self,
        *,
        bounds: tuple[float, float] | None = None,
        bins: int | Sequence[float] | None = None,
        time: str | None = None,
        event: str | None = None,
        where: Where = None,
        by: By = None,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        mechanism: str = "gaussian",
        min_cell_size: int | None = None,
        label: str = "",
    ) -> Query:
        """Kaplan-Meier survival on a public time grid over ``bounds`` (e.g. (0, 1825) days,
        ``bins`` equal bins, 20 by default); ``time``/``event`` default to the dictionary's
        time and event columns. Follow-up beyond the grid is censored at its end."""
        return self._make(
            kind="survival",
            column=time,
            event=event,
            bounds=bounds,
            bins=_bins(bins),
            where=where,
            by=by,
            label=label,
            epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            mechanism=mechanism,
            min_cell_size=min_cell_size,
        )

    km = survival


def _bins(bins: int | Sequence[float] | None) -> Any:
    if bins is None:
        return ()
    return bins if isinstance(bins, int) else tuple(bins)


def as_queries(queries: Query | Sequence[Query]) -> list[Query]:
    items = [queries] if isinstance(queries, Query) else list(queries)
    if not items or not all(isinstance(q, Query) for q in items):
        raise QueryError(f"ask() takes a query or a list of queries built with wb.query.<kind>(...); got {queries!r}.")
    return items


def signed_requests(
    *, items: Sequence[Query], project: str, run_id: str, signer: Signer | None, actor: str = "analyst (notebook)"
) -> list[QueryRequest]:
    """One request per query, each carrying the researcher's one signature on the batch."""
    from federation.protocol.authorization import sign_queries

    authorization = (
        None
        if signer is None
        else sign_queries(signer, project=project, run_id=run_id, canonical_queries=[q.canonical() for q in items])
    )
    return [
        QueryRequest(query=q, project=project, actor=actor, run_id=run_id, authorization=authorization) for q in items
    ]


def cost(*, sites: list[SiteConfig], queries: Query | Sequence[Query], project: str) -> pd.DataFrame:
    """What each query would cost at each site now, without running it or spending.

    Each row is one site's own computation (``federation.site.query_answers.query_cost``,
    the function its ``query:cost`` handler runs): the noise it would add at its delta,
    the epsilon of this query alone, the project's total after it, whether it fits, and
    whether it would be a free replay. In a simulation the ledgers are on this machine,
    so no engine is started.
    """
    rows = []
    for query in as_queries(queries):
        request = QueryRequest(query=query, project=project)
        for site in sites:
            try:
                rows.append(query_cost(request=request, site=site))
            except (Refused, InternalFault) as refused:
                rows.append(
                    {
                        "site": site.site_id,
                        "query_id": query.query_id,
                        "query": query.label or query.describe(),
                        "fits": False,
                        "binding": f"refused ({refusal_kind(refused)}): {refused}",
                    }
                )
    return pd.DataFrame(rows)
