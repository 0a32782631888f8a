"""Signed requests at the site's gate (issue 14, item 3), with real Flower messages, a
real ledger, real keys and the real audit log: a node that requires signed requests
serves a study and a query batch signed by a researcher its board approved, names the
researcher in its audit log, and refuses everything a relay could do with a signature
(change it, replay it, stretch it to another round or project) or without one, before
any work and without charging anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from _node_helpers import PROJECT, received, set_key
from flwr.app import MessageType

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
from federation.analytics.query import Query
from federation.protocol.authorization import Authorization, sign_queries, sign_study
from federation.protocol.query_request import QueryRequest
from federation.site.audit import audit_path, recent_entries, verify_audit
from federation.site.authorization import NOT_APPROVED, not_approved
from federation.site.tasks import serve
from privacy_budgets import Ledger
from privacy_budgets.signatures import KeyFileError, KeySigner, generate_key_pair, load_private_key
from workbench.analytics import signed_requests
from workbench.researcher import researcher_signer


@pytest.fixture
def signed_node(node, tmp_path):
    """The node requiring signed requests, its board's approval of researcher "Dr R" for
    PROJECT, and keys: Dr R's (approved) and an outsider's (never approved)."""
    set_key(node.toml, "require_signed_requests", "true")
    approved = generate_key_pair(path=tmp_path / "keys" / "dr_r", passphrase="correct horse", comment="Dr R")
    node.outsider_key = generate_key_pair(path=tmp_path / "keys" / "outsider", passphrase=None, comment="outsider")
    node.dr_r_key = approved
    site = node.site
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        ledger.allocate(dataset=site.dataset, project="other-study", epsilon=2.0, actor="board", reason="r")
        ledger.approve(
            dataset=site.dataset,
            project=PROJECT,
            purpose="cardio study",
            researchers=[{"name": "Dr R", "key": approved.openssh()}],
            actor="ethics board",
            reason="protocol EB-1",
        )
    node.dr_r = researcher_signer(key=tmp_path / "keys" / "dr_r", passphrase="correct horse")
    node.outsider = KeySigner(load_private_key(path=tmp_path / "keys" / "outsider", passphrase=None))
    return node


def _serve(node, config: dict, kind: str, **message):
    return serve(kind=kind, msg=received(config, **message), site=node.site, node_toml=node.toml)


def _refusal(reply) -> dict:
    assert "refusal" in reply.content, "served, but should have been refused"
    return dict(reply.content["refusal"])


def _lines(node) -> list[dict]:
    return [e for e in reversed(recent_entries(path=audit_path(node.config.state_dir))) if e["kind"] == "request"]


def _spent(node, project=PROJECT) -> float:
    site = node.site
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        return ledger.spent(dataset=site.dataset, project=project)


def _queries() -> list[Query]:
    return [Query(kind="count", epsilon=0.2), Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.2)]


def test_a_signed_query_batch_is_served_once_and_names_the_researcher(signed_node):
    node = signed_node
    count, mean = signed_requests(items=_queries(), project=PROJECT, run_id="batch-1", signer=node.dr_r)
    for request in (count, mean):
        reply = _serve(node, request.to_config(), f"query:{request.query.kind}")
        assert "refusal" not in reply.content
    lines = _lines(node)
    assert [(e["task"], e["decision"]["outcome"]) for e in lines] == [
        ("query:count", "served"),
        ("query:mean", "served"),
    ]
    assert all(e["researcher"]["name"] == "Dr R" and e["researcher"]["key"].startswith("SHA256:") for e in lines)
    spent = _spent(node)
    assert spent > 0

    # the coordinator replays the first query of the batch: refused, nothing charged
    replayed = _refusal(_serve(node, count.to_config(), "query:count", message_id="m-2"))
    assert replayed["kind"] == "policy" and "replay refused" in replayed["reason"]
    assert _spent(node) == spent
    assert verify_audit(audit_path(node.config.state_dir)).ok


def test_unsigned_unapproved_and_other_project_requests_are_refused_alike(signed_node):
    node = signed_node
    unsigned = QueryRequest(query=Query(kind="count", epsilon=0.2), project=PROJECT, run_id="b").to_config()
    said = _refusal(_serve(node, unsigned, "query:count"))
    assert "carries no signature" in said["reason"] and "workbench researcher init" in said["reason"]

    # an outsider's key, for a project that exists here and for one that does not; and the
    # approved researcher for a project the board approved nobody for: the same words
    # each time, so a party that cannot sign learns nothing about projects or researchers
    reasons = []
    for signer, project in ((node.outsider, PROJECT), (node.outsider, "no-such-project"), (node.dr_r, "other-study")):
        (request,) = signed_requests(
            items=[Query(kind="count", epsilon=0.2)], project=project, run_id="b", signer=signer
        )
        refused = _refusal(_serve(node, request.to_config(), "query:count"))
        assert refused["kind"] == "policy"
        reasons.append(refused["reason"])
    outsider, dr_r = node.outsider_key.fingerprint, node.dr_r_key.fingerprint
    assert reasons == [not_approved(outsider), not_approved(outsider), not_approved(dr_r)]
    assert NOT_APPROVED in reasons[0] and "Fix:" in reasons[0]
    assert _spent(node) == 0.0 and _spent(node, "other-study") == 0.0
    assert all(e["researcher"] is None and e["decision"]["outcome"] == "refused" for e in _lines(node))


def test_a_relay_cannot_change_a_signed_request(signed_node):
    node = signed_node
    (request,) = signed_requests(
        items=[Query(kind="count", epsilon=0.2)], project=PROJECT, run_id="b", signer=node.dr_r
    )
    config = request.to_config()

    more_epsilon = {**config, "query": Query(kind="count", epsilon=2.0).canonical()}
    said = _refusal(_serve(node, more_epsilon, "query:count"))
    assert "a query the researcher did not sign" in said["reason"]

    other_project = {**config, "project": "other-study"}
    said = _refusal(_serve(node, other_project, "query:count"))
    assert "the researcher signed a request for 'cardio-study'" in said["reason"]

    document = Authorization.from_config(config).document
    later = (datetime.now(UTC) + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stretched = {**document, "expires": later}  # a longer life, under the old signature
    tampered = {**config, **Authorization(document=stretched, signature=config["auth-signature"]).to_config()}
    said = _refusal(_serve(node, tampered, "query:count"))
    assert "does not verify" in said["reason"]
    assert _spent(node) == 0.0 and _spent(node, "other-study") == 0.0


def test_an_expired_signed_request_is_refused(signed_node, monkeypatch):
    node = signed_node
    import privacy_budgets.signatures as signatures

    made = datetime.now(UTC) - timedelta(hours=3)
    real = signatures.new_document
    monkeypatch.setattr(signatures, "new_document", lambda **kw: real(**{**kw, "now": made}))
    authorization = sign_queries(
        node.dr_r,
        project=PROJECT,
        run_id="old",
        canonical_queries=[Query(kind="count", epsilon=0.2).canonical()],
        expires_in=timedelta(hours=1),
    )
    monkeypatch.undo()
    request = QueryRequest(
        query=Query(kind="count", epsilon=0.2), project=PROJECT, run_id="old", authorization=authorization
    )
    said = _refusal(_serve(node, request.to_config(), "query:count"))
    assert "counts only until it expires" in said["reason"] and "sign it again" in said["reason"]
    assert _spent(node) == 0.0


def test_a_wrong_passphrase_is_refused_before_anything_is_signed(signed_node, tmp_path):
    with pytest.raises(KeyFileError, match=r"wrong passphrase\). Nothing was signed"):
        researcher_signer(key=tmp_path / "keys" / "dr_r", passphrase="wrong", ask=False)


@pytest.mark.slow
def test_a_study_signed_for_two_rounds_runs_two_and_no_third(signed_node):
    from federation.coordinator.server_app import initial_arrays
    from federation.protocol.spec import TrainingSpec
    from federation.training.features import FeatureEncoder

    node = signed_node
    spec = TrainingSpec(project=PROJECT, target_epsilon=1.0, rounds=2, model="logreg", batch_size=32, run_id="run-9")
    encoder = FeatureEncoder.from_dictionary(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    signed = sign_study(
        node.dr_r,
        project=PROJECT,
        run_id=spec.run_id,
        spec_config=spec.to_config(),
        encoder_json=encoder.to_json(),
        max_rounds=2,
    )
    arrays = initial_arrays(spec=spec, encoder=encoder)

    def train(server_round: int, **changes):
        config = {
            **spec.to_config(),
            "server-round": server_round,
            "feature-encoder": encoder.to_json(),
            **signed.to_config(),
            **changes,
        }
        return _serve(node, config, "train", message_type=MessageType.TRAIN, arrays=arrays)

    # a relay that changes the spec (a bigger epsilon) or the encoder: refused before any work
    said = _refusal(train(1, **{"spec-target-epsilon": 5.0}))
    assert "a study spec other than the signed one" in said["reason"]
    said = _refusal(train(1, **{"feature-encoder": encoder.to_json().replace('"age"', '"Age"', 1)}))
    assert "encoder" in said["reason"]
    assert _spent(node) == 0.0

    assert "refusal" not in train(1).content
    after_one = _spent(node)
    said = _refusal(train(1))  # the same round again under the same signature
    assert "already served" in said["reason"]
    assert "refusal" not in train(2).content
    after_two = _spent(node)
    said = _refusal(train(3))  # a third round under a signature for two
    assert "2 training round(s), all the signed request allows (max_rounds 2)" in said["reason"]
    assert 0 < after_one < after_two == _spent(node)
    served = [e for e in _lines(node) if e["decision"]["outcome"] == "served"]
    assert [e["researcher"]["name"] for e in served] == ["Dr R", "Dr R"]
