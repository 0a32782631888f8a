"""A site's limits on the sizes a coordinator picks for an analytics query.

Each is checked on the query alone, against the site's public data dictionary, before
any data is read and before any privacy-loss distribution is built (so a query cannot
make a site spend memory or time before it is refused): the epsilon it asks for, the
noise multiplier it states, the number of bins of its grid, the number of strata its
``by`` columns make, the number of quantile probabilities. The values are the site's
policy ([analytics] in node.toml, declared in federation/site/node_keys.py, with their
defaults there); the mechanism takes them as arguments, as it does the disclosure rules.

>>> from federation.analytics.query import Query
>>> limits = AnalyticsLimits(max_query_epsilon=1.0)
>>> limits.check(query=Query(kind="count", epsilon=0.5), dictionary=None)
>>> limits.check(query=Query(kind="count", epsilon=2.0), dictionary=None)
Traceback (most recent call last):
...
federation.analytics.limits.QueryLimitExceeded: this site answers a query of at most epsilon 1 (max_query_epsilon in [analytics] of its node.toml); this query asks for epsilon 2. Fix: ask for epsilon 1 or less (several smaller queries cost as much as one large one), or ask the site to raise max_query_epsilon.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from federation.analytics.errors import QueryError
from federation.data.dictionary import DataDictionary

# Defaults of the site policy (node_keys.py declares the keys with these values).
DEFAULT_MAX_QUERY_EPSILON = 5.0
DEFAULT_MIN_NOISE_MULTIPLIER = 0.5
DEFAULT_MAX_BINS = 200
DEFAULT_MAX_STRATA = 200
DEFAULT_MAX_PROBABILITIES = 20


class QueryLimitExceeded(QueryError):
    """A query asks for more than the site's limits allow (refused as "policy")."""


@dataclass(frozen=True)
class AnalyticsLimits:
    """The limits in force at one site (see the module docstring)."""

    max_query_epsilon: float = DEFAULT_MAX_QUERY_EPSILON
    min_noise_multiplier: float = DEFAULT_MIN_NOISE_MULTIPLIER
    max_bins: int = DEFAULT_MAX_BINS
    max_strata: int = DEFAULT_MAX_STRATA
    max_probabilities: int = DEFAULT_MAX_PROBABILITIES

    def __post_init__(self) -> None:
        for name in ("max_query_epsilon", "min_noise_multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"an analytics limit's {name} is a positive number; got {value!r}.")
            object.__setattr__(self, name, float(value))
        for name in ("max_bins", "max_strata", "max_probabilities"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"an analytics limit's {name} is a whole number of at least 1; got {value!r}.")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalyticsLimits:
        return cls(**data)

    def check(self, *, query, dictionary: DataDictionary | None) -> None:
        """Raise QueryLimitExceeded naming the rule, the value and the fix, or return."""
        if query.epsilon is not None and query.epsilon > self.max_query_epsilon:
            self._refuse(
                f"a query of at most epsilon {self.max_query_epsilon:g}",
                "max_query_epsilon",
                f"asks for epsilon {query.epsilon:g}",
                f"ask for epsilon {self.max_query_epsilon:g} or less (several smaller queries cost as much as "
                "one large one)",
            )
        if query.noise_multiplier is not None and query.noise_multiplier < self.min_noise_multiplier:
            self._refuse(
                f"a query whose noise multiplier is at least {self.min_noise_multiplier:g}",
                "min_noise_multiplier",
                f"states noise_multiplier {query.noise_multiplier:g}",
                f"state noise_multiplier {self.min_noise_multiplier:g} or more, or state epsilon instead (the site "
                "then calibrates the noise)",
            )
        bins = len(query.bins) - 1 if query.bins else 0
        if bins > self.max_bins:
            self._refuse(
                f"a grid of at most {self.max_bins} bins",
                "max_bins",
                f"has {bins}",
                f"ask for {self.max_bins} bins or fewer",
            )
        if len(query.probabilities) > self.max_probabilities:
            self._refuse(
                f"at most {self.max_probabilities} quantile probabilities",
                "max_probabilities",
                f"asks for {len(query.probabilities)}",
                f"ask for {self.max_probabilities} or fewer",
            )
        if dictionary is not None and query.by:
            strata = math.prod(len(query.categories(dictionary, name)) for name in query.by)
            if strata > self.max_strata:
                self._refuse(
                    f"a query of at most {self.max_strata} strata (combinations of its by columns' categories)",
                    "max_strata",
                    f"makes {strata} (by {', '.join(query.by)})",
                    "stratify by fewer columns, or by columns with fewer categories",
                )

    @staticmethod
    def _refuse(rule: str, key: str, value: str, fix: str) -> None:
        raise QueryLimitExceeded(
            f"this site answers {rule} ({key} in [analytics] of its node.toml); this query {value}. "
            f"Fix: {fix}, or ask the site to raise {key}."
        )
