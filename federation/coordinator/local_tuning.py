"""The coordinator's side of local tuning: one ``tune`` message to every site, and each
site's answer (its released best configuration and noisy score, or its refusal).

Nothing is aggregated: each site chose among the candidates on its own rows and
charged its own ledger (federation/site/local_tuning.py). The coordinator relays the
researcher's signature unchanged; every value it sends is checked by the sites.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from federation.coordinator.events import SiteReply
from federation.coordinator.reply_check import SiteRegistry, checked
from federation.coordinator.study_loop import wait_for_sites
from federation.protocol.authorization import Authorization
from federation.protocol.local_tuning import REPLY_KEY
from federation.protocol.task_kinds import QUERY_KIND_KEY, TUNE


@dataclass(frozen=True)
class SiteTuning:
    """One site's answer: ``released`` (best_index, best, score and the charged pair with
    the site's calibration) when it served, else its refusal in ``reply``."""

    reply: SiteReply
    released: dict[str, Any] | None


def ask_sites_to_tune(
    *,
    grid: Grid,
    config: dict[str, Any],
    n_sites: int,
    timeout: float = 600.0,
    authorization: Authorization | None = None,
    registry: SiteRegistry | None = None,
) -> list[SiteTuning]:
    """Send the local tuning (``config``: ``protocol.local_tuning.tuning_config``) to every
    site once ``n_sites`` are connected; one answer per site."""
    node_ids = wait_for_sites(grid, n_sites, timeout)
    sent = {**config, QUERY_KIND_KEY: TUNE}
    if authorization is not None:  # the researcher's signature, relayed as is
        sent.update(authorization.to_config())
    messages = [
        Message(content=RecordDict({"config": ConfigRecord(sent)}), message_type=MessageType.QUERY, dst_node_id=node)
        for node in node_ids
    ]
    answers = []
    for msg in grid.send_and_receive(messages=messages, timeout=timeout):
        reply = checked(msg, node_names={}, registry=registry)
        released = json.loads(str(reply.info[REPLY_KEY])) if reply.status == "ok" and REPLY_KEY in reply.info else None
        answers.append(SiteTuning(reply=reply, released=released))
    return sorted(answers, key=lambda a: a.reply.site_id)


@dataclass
class TuningBox:
    """Carries the answers out of the ServerApp's thread."""

    answers: list[SiteTuning] | None = None
    errors: list[BaseException] = field(default_factory=list)


def build_local_tuning_app(
    *, config: dict[str, Any], n_sites: int, box: TuningBox, authorization: Authorization | None = None
) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            box.answers = ask_sites_to_tune(grid=grid, config=config, n_sites=n_sites, authorization=authorization)
        except BaseException as err:  # re-raised in the caller's thread
            box.errors.append(err)
            raise

    return app
