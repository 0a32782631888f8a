"""The one error a bad analytics query raises, here or at a site."""

from __future__ import annotations

from federation.errors import BadInput


class QueryError(BadInput, ValueError):
    """A query that breaks a rule: an unknown column, missing bounds, a bad epsilon.

    The message states the rule, the bad value and the fix. A site refuses such a
    query with the same message, before it reads any data or spends any budget.
    """
