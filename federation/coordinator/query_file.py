"""A batch of analytics queries as a deployed coordinator's ServerApp reads it.

The workbench writes the *query file* and starts a Flower run with the run config key
``query-file``; the ServerApp (study_server_app.py) asks the sites through the same
functions as the simulation (federation/coordinator/analytics.py) and writes every
site's reply, as the site sent it, into the run folder's ``outcome.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from federation.analytics.query import Query
from federation.coordinator.analytics import SiteQueryReply
from federation.protocol.authorization import Authorization
from federation.protocol.query_request import QueryRequest


@dataclass(frozen=True)
class QueryFile:
    requests: tuple[QueryRequest, ...]
    n_sites: int
    run_folder: Path
    costs: bool = False  # ask each site what each query would cost (nothing run or spent)
    answers: bool = True  # then have the sites answer
    timeout: float = 600.0
    prompt_grid: bool = True
    site_names: dict[int, str] | None = None  # Flower node id -> site id (the registry)
    ledger_keys: dict[str, str] | None = None  # site id -> its registered ledger key (hex)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "requests": [
                        {
                            "query": r.query.canonical(),
                            "project": r.project,
                            "actor": r.actor,
                            "run_id": r.run_id,
                            "authorization": None if r.authorization is None else r.authorization.to_json(),
                        }
                        for r in self.requests
                    ],
                    "n_sites": self.n_sites,
                    "run_folder": str(self.run_folder),
                    "costs": self.costs,
                    "answers": self.answers,
                    "timeout": self.timeout,
                    "prompt_grid": self.prompt_grid,
                    "site_names": {str(k): v for k, v in (self.site_names or {}).items()},
                    "ledger_keys": dict(self.ledger_keys or {}),
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: Path) -> QueryFile:
        data = json.loads(Path(path).read_text())
        requests = tuple(
            QueryRequest(
                query=Query.from_json(r["query"]),
                project=r["project"],
                actor=r["actor"],
                run_id=r["run_id"],
                authorization=Authorization.from_json(r.get("authorization")),
            )
            for r in data["requests"]
        )
        return cls(
            requests=requests,
            n_sites=int(data["n_sites"]),
            run_folder=Path(data["run_folder"]),
            costs=bool(data["costs"]),
            answers=bool(data["answers"]),
            timeout=float(data["timeout"]),
            prompt_grid=bool(data["prompt_grid"]),
            site_names={int(k): str(v) for k, v in data.get("site_names", {}).items()},
            ledger_keys={str(k): str(v) for k, v in data.get("ledger_keys", {}).items()},
        )


def answers_to_json(*, answers: list[list[SiteQueryReply]] | None, costs: pd.DataFrame | None) -> dict[str, Any]:
    return {
        "answers": None if answers is None else [[reply.to_json() for reply in replies] for replies in answers],
        "costs": None if costs is None else costs.to_dict(orient="records"),
    }


def answers_from_json(data: dict[str, Any]) -> tuple[list[list[SiteQueryReply]] | None, pd.DataFrame | None]:
    answers = data.get("answers")
    costs = data.get("costs")
    return (
        None if answers is None else [[SiteQueryReply.from_json(r) for r in replies] for replies in answers],
        None if costs is None else pd.DataFrame(costs),
    )
