"""The coordinator verifies what it relays (issue 14, item 4): a real site's real reply
(its handler, its ledger's signed receipts) is accepted only from the node registered
as that site, and only with receipts that verify under the site's registered ledger
key. A rogue node that claims another site's id, an unregistered node, a forged or an
altered receipt: refused, and nothing of the reply enters the journal (the mirror)."""

from __future__ import annotations

import json

import pytest
from _node_helpers import PROJECT, received
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Message

from federation.analytics.query import Query
from federation.coordinator.prompt_grid import PromptGrid
from federation.coordinator.reply_check import REFUSED, SiteRegistry, checked
from federation.coordinator.run_folder import RunFolder
from federation.protocol.query_request import QueryRequest
from federation.protocol.replies import SITE_KEY
from federation.site.tasks import serve
from privacy_budgets import Ledger
from privacy_budgets.keys import public_hex
from privacy_budgets.receipts import sign_receipt

NODE = 7  # the node id the SuperLink authenticated (the reply's src_node_id)


@pytest.fixture
def answered(node):
    """A count query served by the site: the request as sent, the site's real reply, its ledger key."""
    request = received(QueryRequest(query=Query(kind="count", epsilon=0.2), project=PROJECT, run_id="r1").to_config())
    reply = serve(kind="query:count", msg=request, site=node.site, node_toml=node.toml)
    assert SITE_KEY in reply.content and reply.metadata.src_node_id == NODE
    with Ledger.open(node.site.ledger_path, site_id=node.site.site_id) as ledger:
        key = ledger.public_key
    return request, reply, key


def _with_receipts(reply: Message, receipts: list[dict]) -> Message:
    record = dict(reply.content[SITE_KEY])
    reply.content[SITE_KEY] = ConfigRecord({**record, "receipts": json.dumps(receipts)})
    return reply


def _receipts(reply: Message) -> list[dict]:
    return json.loads(str(reply.content[SITE_KEY]["receipts"]))


def test_a_reply_from_the_registered_node_with_its_sites_receipts_passes(answered):
    _, reply, key = answered
    registry = SiteRegistry(names={NODE: "hospital-a"}, ledger_keys={"hospital-a": key})
    site = checked(reply, node_names={}, registry=registry)
    assert site.status == "ok" and site.site_id == "hospital-a" and len(site.receipts) == 1


def test_a_rogue_node_claiming_another_sites_id_is_refused(answered):
    _, reply, key = answered
    # node 7 is registered as a site of its own; its reply claims to be hospital-a
    registry = SiteRegistry(names={NODE: "rogue-site"}, ledger_keys={"hospital-a": key, "rogue-site": ""})
    site = checked(reply, node_names={}, registry=registry)
    assert site.status == "failed" and site.site_id == "rogue-site" and site.receipts == () and site.info == {}
    assert site.reason.startswith(REFUSED) and "registered as site rogue-site" in site.reason
    assert "claims to be site 'hospital-a'" in site.reason

    unregistered = SiteRegistry(names={NODE + 1: "hospital-a"}, ledger_keys={"hospital-a": key})
    site = checked(reply, node_names={}, registry=unregistered)
    assert site.status == "failed" and f"node {NODE}, which is not registered" in site.reason


def test_forged_and_altered_receipts_are_refused(answered):
    _, reply, key = answered
    registry = SiteRegistry(names={NODE: "hospital-a"}, ledger_keys={"hospital-a": key})
    real = _receipts(reply)[0]

    forger = Ed25519PrivateKey.generate()  # a receipt signed by someone else, carrying its own key
    fields = {k: v for k, v in real.items() if k != "signature"}
    forged = sign_receipt(forger, {**fields, "epsilon": 0.0, "public_key": public_hex(forger)}).to_dict()
    site = checked(_with_receipts(reply, [forged]), node_names={}, registry=registry)
    assert site.status == "failed" and "a key other than the site's registered ledger key" in site.reason

    altered = {**real, "epsilon": real["epsilon"] / 10}  # the real signature, a smaller charge
    site = checked(_with_receipts(reply, [altered]), node_names={}, registry=registry)
    assert site.status == "failed" and "does not verify under the site's ledger key" in site.reason

    # without a registry (the simulation), an altered receipt is still refused
    site = checked(_with_receipts(reply, [altered]), node_names={}, registry=None)
    assert site.status == "failed" and "does not verify" in site.reason


class _OneReplyGrid:
    """The least of a Grid PromptGrid needs: it 'delivers' the request and hands back
    the given reply (the site's real reply, or a rogue's)."""

    def __init__(self, reply: Message) -> None:
        self.reply = reply

    def push_messages(self, messages):
        return [m.metadata.message_id for m in messages]

    def pull_messages(self, ids):
        return [self.reply]


def test_a_refused_reply_never_enters_the_journal(answered, tmp_path):
    request, reply, key = answered
    folder = RunFolder(tmp_path / "run")
    registry = SiteRegistry(names={NODE: "rogue-site"}, ledger_keys={"hospital-a": key})
    grid = PromptGrid(_OneReplyGrid(reply), site_names=registry.names, journal=folder, registry=registry)
    request.metadata.dst_node_id = NODE
    (got,) = grid.send_and_receive([request], timeout=5)
    assert got.has_error() and got.error.reason.startswith(REFUSED)
    replies = [e for e in folder.exchanges() if e["event"] == "reply"]
    assert len(replies) == 1 and replies[0]["status"] == "failed" and replies[0]["receipts"] == []
    assert all(not c.rounds_charged and c.epsilon_project is None for c in folder.charges(sites=["rogue-site"]))
