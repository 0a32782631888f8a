"""Each preflight check on its own: the verdict, what it found and the fix (in process)."""

from __future__ import annotations

import socket

import pytest
from _node_helpers import set_key, write_ca_certificate
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from federation.site.audit import append_audit, audit_path
from federation.site.pause import pause_node
from federation.site.preflight import run_preflight


@pytest.fixture
def ready(node):
    """The node fixture with its CA and a coordinator that accepts connections."""
    write_ca_certificate(node.toml.parent / "ca.crt")
    with socket.create_server(("127.0.0.1", 0)) as server:
        set_key(node.toml, "address", f'"127.0.0.1:{server.getsockname()[1]}"')
        yield node


def _checks(node, **kwargs) -> dict:
    return {c.name: c for c in run_preflight(config_path=node.toml, **kwargs).checks}


def _ssh_public(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_a_ready_node_passes(ready):
    result = run_preflight(config_path=ready.toml)
    assert not result.failed and result.config.site_id == "hospital-a"
    assert {c.name for c in result.checks if c.status != "ok"} == {"alerts"}
    assert "only the workbench's own ClientApp" in _checks(ready)["trusted app signers"].detail


def test_check_says_which_app_signers_the_site_trusts(ready):
    trusted = ready.toml.parent / "trusted_entities.yaml"
    trusted.write_text(
        f"fpk_board: '{_ssh_public(ed25519.Ed25519PrivateKey.generate())} ethics-board'\n"
        f"fpk_team: '{_ssh_public(ed25519.Ed25519PrivateKey.generate())}'\n"
    )
    set_key(ready.toml, "trusted_entities", '"trusted_entities.yaml"')
    check = _checks(ready)["trusted app signers"]
    assert (
        check.status == "ok" and check.detail == "the node runs only apps signed by: fpk_board (ethics-board), fpk_team"
    )

    trusted.write_text(f"fpk_x: '{_ssh_public(ec.generate_private_key(ec.SECP384R1()))}'\n")
    check = _checks(ready)["trusted app signers"]
    assert check.status == "fail" and "not Ed25519, which Flower requires" in check.detail


def test_an_unreachable_coordinator_fails_check_and_only_warns_start(ready):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free = probe.getsockname()[1]
    set_key(ready.toml, "address", f'"127.0.0.1:{free}"')
    failed = _checks(ready)["coordinator"]
    assert failed.status == "fail" and f"cannot open a TCP connection to 127.0.0.1:{free}" in failed.detail
    assert "SuperLink is running" in failed.fix
    assert _checks(ready, require_coordinator=False)["coordinator"].status == "warn"


def test_missing_or_expired_ca_and_loose_key_fail_with_their_fix(ready):
    ca = ready.toml.parent / "ca.crt"
    ca.write_text("not a certificate")
    assert "is not a PEM certificate" in _checks(ready)["CA certificate"].detail
    ca.unlink()
    check = _checks(ready)["CA certificate"]
    assert (
        check.status == "fail" and check.detail.endswith("ca.crt does not exist.") and "coordinator sent" in check.fix
    )
    (ready.toml.parent / "keys" / "node_key").chmod(0o640)
    check = _checks(ready)["node key"]
    assert check.status == "fail" and "mode 640" in check.detail and check.fix.startswith("chmod 600")


def test_a_tampered_audit_log_and_a_pause_are_reported(ready):
    log = audit_path(ready.config.state_dir)
    append_audit(path=log, entry={"kind": "request", "task": "train"})
    append_audit(path=log, entry={"kind": "request", "task": "evaluate"})
    assert _checks(ready)["audit log"].status == "ok"
    log.write_text(log.read_text().replace('"evaluate"', '"train"'))
    check = _checks(ready)["audit log"]
    assert check.status == "fail" and "TAMPERED at line 2" in check.detail and "keep the file as evidence" in check.fix
    pause_node(state_dir=ready.config.state_dir, reason="incident", who="it")
    check = _checks(ready)["pause switch"]
    assert check.status == "warn" and "by it: incident" in check.detail


def test_a_ledger_that_does_not_verify_fails(ready):
    import sqlite3

    with sqlite3.connect(ready.site.ledger_path) as conn:  # someone edits an entry behind the ledger's back
        assert conn.execute("UPDATE entries SET actor = 'someone else' WHERE seq = 2").rowcount == 1
    check = _checks(ready)["ledger"]
    assert check.status == "fail" and "does not verify" in check.detail
