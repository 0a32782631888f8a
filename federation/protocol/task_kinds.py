"""The names of the tasks a node can serve, as a site's policy writes them.

Kept apart from the site's ``tasks.py`` (which imports torch through the training
handler) so that reading a ``node.toml`` stays fast; a test checks the two lists agree.
The coordinator names the same kinds in the messages it sends.
"""

from __future__ import annotations

TRAIN = "train"
EVALUATE = "evaluate"
QUERY_PREFIX = "query:"
ALL_QUERIES = "query:*"  # a policy's shorthand: every analytics query
QUERY_KIND_KEY = "query-kind"  # the config key of a query message that names its kind
RANGES = "ranges"  # DP range finding before training (federation/site/range_task.py)
COST_KIND = "cost"  # what a query would cost; reads no values (analytics_task.handle_cost)
# Local tuning by private selection (federation/site/local_tuning.py): sent as a query
# message with this query-kind, yet its own kind, so that a policy's "query:*" never
# admits it (it trains models); a site lists "tune" in allowed_tasks to serve it.
TUNE = "tune"

QUERY_NAMES = (
    "count",
    "sum",
    "mean",
    "variance",
    "histogram",
    "crosstab",
    "quantiles",
    "survival",
    RANGES,
    COST_KIND,
)
KNOWN_TASKS: tuple[str, ...] = (TRAIN, EVALUATE, TUNE, *(f"{QUERY_PREFIX}{name}" for name in QUERY_NAMES))
POLICY_WORDS: tuple[str, ...] = (*KNOWN_TASKS, ALL_QUERIES)


def message_kind(query_kind: str) -> str:
    """The task kind of a query message with this ``query-kind``."""
    return TUNE if query_kind == TUNE else f"{QUERY_PREFIX}{query_kind}"


def policy_allows(*, allowed: tuple[str, ...], kind: str) -> bool:
    """Whether a policy's ``allowed_tasks`` admit the task ``kind``."""
    if kind in allowed:
        return True
    return kind.startswith(QUERY_PREFIX) and ALL_QUERIES in allowed
