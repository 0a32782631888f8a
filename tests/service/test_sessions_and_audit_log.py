"""The study service's login and its log, in process (no network: the loopback tests run
the whole service). A nonce serves one login; a signature made for another namespace or
another nonce does not log in; a token expires; the audit log's chain and signed heads
verify, and a changed line, a removed line or a head under another key is found."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.coordinator.certificates import TlsFiles, create_tls_files, issue_server_certificate
from federation.coordinator.study_service.audit_log import AuditLog, AuditLogBroken, verify_log
from federation.coordinator.study_service.sessions import LoginRefused, Sessions, login_message
from privacy_budgets.signatures import LOGIN_NAMESPACE, REQUEST_NAMESPACE, KeySigner, public_key_of


@pytest.fixture
def signer() -> KeySigner:
    return KeySigner(Ed25519PrivateKey.generate())


def test_a_nonce_logs_in_once_and_the_token_names_the_key(signer):
    sessions = Sessions(token_ttl=60)
    nonce, _ = sessions.challenge()
    signature = signer.sign(login_message(nonce), namespace=LOGIN_NAMESPACE)
    session = sessions.login(nonce=nonce, signature=signature)
    assert session.fingerprint == public_key_of(signer.key).fingerprint
    assert sessions.session(session.token) == session
    with pytest.raises(LoginRefused, match="once") as again:
        sessions.login(nonce=nonce, signature=signature)
    assert again.value.value == "the nonce is unknown, used or expired"


def test_a_signature_for_another_namespace_or_nonce_does_not_log_in(signer):
    sessions = Sessions()
    nonce, _ = sessions.challenge()
    request_signature = signer.sign(login_message(nonce), namespace=REQUEST_NAMESPACE)
    with pytest.raises(LoginRefused, match="namespace"):
        sessions.login(nonce=nonce, signature=request_signature)
    nonce, _ = sessions.challenge()
    other = signer.sign(login_message("another nonce"), namespace=LOGIN_NAMESPACE)
    with pytest.raises(LoginRefused):
        sessions.login(nonce=nonce, signature=other)


def test_a_token_expires_and_an_unknown_one_is_none(signer):
    sessions = Sessions(token_ttl=-1)  # expired as soon as it is made
    nonce, _ = sessions.challenge()
    session = sessions.login(nonce=nonce, signature=signer.sign(login_message(nonce), namespace=LOGIN_NAMESPACE))
    assert sessions.session(session.token) is False
    assert sessions.session("not a token") is None


@pytest.fixture
def service_key(tmp_path):
    ca = create_tls_files(folder=tmp_path / "tls", hosts=["127.0.0.1"])
    issue_server_certificate(ca=ca, hosts=["127.0.0.1"], certificate=tmp_path / "s.pem", key=tmp_path / "s.key")
    return tmp_path / "s.pem", serialization.load_pem_private_key((tmp_path / "s.key").read_bytes(), password=None)


def test_the_log_chains_its_lines_and_signs_heads_at_each_start_and_every_n_lines(tmp_path, service_key):
    certificate, key = service_key
    path = tmp_path / "audit.jsonl"
    log = AuditLog.open(path=path, key=key, head_every=3)
    for i in range(7):
        log.append(who=f"SHA256:r{i % 2}", action="start_study", detail={"study": str(i)})
    AuditLog.open(path=path, key=key, head_every=3).append(who="SHA256:r0", action="result")
    heads = verify_log(path=path, certificate=certificate)
    assert [h["reason"] for h in heads] == ["service started", "every 3 lines", "every 3 lines", "service started"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))

    changed = [dict(e) for e in lines]
    changed[3]["who"] = "SHA256:someone-else"
    (tmp_path / "changed.jsonl").write_text("".join(json.dumps(e) + "\n" for e in changed))
    with pytest.raises(AuditLogBroken, match="line 4 breaks the hash chain"):
        verify_log(path=tmp_path / "changed.jsonl", certificate=certificate)
    (tmp_path / "cut.jsonl").write_text("".join(json.dumps(e) + "\n" for i, e in enumerate(lines) if i != 2))
    with pytest.raises(AuditLogBroken, match="line 3 breaks the hash chain"):
        verify_log(path=tmp_path / "cut.jsonl", certificate=certificate)
    with pytest.raises(AuditLogBroken, match="not signed by the key"):
        verify_log(path=path, certificate=TlsFiles.in_folder(tmp_path / "tls").server_certificate)
    with pytest.raises(AuditLogBroken):  # the service refuses to go on from a broken log
        AuditLog.open(path=tmp_path / "changed.jsonl", key=key)
