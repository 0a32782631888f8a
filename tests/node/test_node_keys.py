"""The node's key pair: ECDSA P-384 in OpenSSH format, private key 0600, never replaced by accident."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from federation.site.keys import NodeKeyError, generate_node_keys, load_private_key, read_public_key_line


def test_a_new_pair_is_p384_openssh_with_a_private_file_of_mode_600(tmp_path):
    key = tmp_path / "keys" / "node_key"
    line = generate_node_keys(private_key=key, comment="hospital-a")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert line.startswith("ecdsa-sha2-nistp384 ") and line.endswith(" hospital-a")
    public = serialization.load_ssh_public_key(line.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP384R1)
    assert read_public_key_line(private_key=key) == line


def test_an_existing_key_is_not_replaced_without_overwrite(tmp_path):
    key = tmp_path / "node_key"
    first = generate_node_keys(private_key=key)
    with pytest.raises(FileExistsError, match="may be the key the coordinator registered"):
        generate_node_keys(private_key=key)
    assert read_public_key_line(private_key=key) == first
    assert generate_node_keys(private_key=key, overwrite=True) != first


def test_a_public_key_of_another_pair_is_caught(tmp_path):
    generate_node_keys(private_key=tmp_path / "a")
    generate_node_keys(private_key=tmp_path / "b")
    (tmp_path / "a.pub").write_bytes((tmp_path / "b.pub").read_bytes())
    with pytest.raises(NodeKeyError, match="does not belong to"):
        read_public_key_line(private_key=tmp_path / "a")


def test_a_key_others_can_read_or_of_another_kind_is_refused(tmp_path):
    key = tmp_path / "node_key"
    generate_node_keys(private_key=key)
    key.chmod(0o644)
    with pytest.raises(NodeKeyError, match=r"readable by others \(mode 644\).*chmod 600"):
        load_private_key(private_key=key)
    other = tmp_path / "ed_key"
    other.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    other.chmod(0o600)
    with pytest.raises(NodeKeyError, match="needs an ECDSA P-384 key"):
        load_private_key(private_key=other)
    with pytest.raises(NodeKeyError, match="private key is missing"):
        load_private_key(private_key=tmp_path / "absent")
