"""The errors of analytics: a bad query (the asker's), and degenerate noise (never released)."""

from __future__ import annotations

from federation.errors import BadInput, InternalFault


class QueryError(BadInput, ValueError):
    """A query that breaks a rule: an unknown column, missing bounds, a bad epsilon.

    The message states the rule, the bad value and the fix. A site refuses such a
    query with the same message, before it reads any data or spends any budget.
    """


class NoiseError(InternalFault, RuntimeError):
    """The noise a release would get is degenerate (zero, subnormal, not finite) or
    cannot be drawn securely: nothing is released. Validation refuses such a query
    first; this is the second check, where the noise is drawn (defence in depth)."""
