"""A query request as it travels: the query, the project to charge, who asks.

The coordinator writes it into a query message's config (``to_config``); the site
reads it back (``from_config``) and answers it (federation/site/query_answers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from federation.analytics.errors import QueryError
from federation.analytics.query import Query
from federation.protocol.authorization import Authorization
from federation.protocol.task_kinds import QUERY_KIND_KEY

QUERY_CONFIG_KEY = "query"
PROJECT_KEY = "project"
ACTOR_KEY = "actor"
RUN_ID_KEY = "run-id"


@dataclass(frozen=True)
class QueryRequest:
    """What the coordinator sends: the query, the project to charge, who asks."""

    query: Query
    project: str
    actor: str = "coordinator"
    run_id: str | None = None
    # The researcher's signature on the batch this query belongs to (authorization.py);
    # None: unsigned, served only where the site's policy allows that.
    authorization: Authorization | None = None

    def to_config(self) -> dict[str, Any]:
        """Flat ConfigRecord values; ``query-kind`` routes the message to its handler."""
        config = {
            QUERY_KIND_KEY: self.query.kind,
            QUERY_CONFIG_KEY: self.query.canonical(),
            PROJECT_KEY: self.project,
            ACTOR_KEY: self.actor,
        }
        if self.run_id:
            config[RUN_ID_KEY] = self.run_id
        if self.authorization is not None:
            config.update(self.authorization.to_config())
        return config

    @classmethod
    def from_config(cls, config: Any) -> QueryRequest:
        values = dict(config)
        missing = [k for k in (QUERY_CONFIG_KEY, PROJECT_KEY) if k not in values]
        if missing:
            raise QueryError(f"A query request carries {', '.join(missing)}; this one lacks it.")
        return cls(
            query=Query.from_json(str(values[QUERY_CONFIG_KEY])),
            project=str(values[PROJECT_KEY]),
            actor=str(values.get(ACTOR_KEY, "coordinator")),
            run_id=str(values[RUN_ID_KEY]) if values.get(RUN_ID_KEY) else None,
            authorization=Authorization.from_config(values),
        )
