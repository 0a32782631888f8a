"""Helpers of the node tests (a module of its own: conftest names are not unique)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, Metadata, RecordDict

PROJECT = "cardio-study"
DELTA = 1e-5


def received(
    config: dict,
    *,
    message_type: str = MessageType.QUERY,
    arrays: ArrayRecord | None = None,
    src_node_id: int = 1,
    message_id: str = "m-1",
) -> Message:
    """A message as a site receives it from the SuperLink (a real Flower Message, with
    the metadata the SuperLink would have set)."""
    metadata = Metadata(
        run_id=42,
        message_id=message_id,
        src_node_id=src_node_id,
        dst_node_id=7,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=600.0,
        message_type=message_type,
    )
    content = {"config": ConfigRecord(config)}
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=RecordDict(content), metadata=metadata)


def set_key(path: Path, key: str, value: str) -> None:
    """Set ``key = value`` (TOML text) in a node.toml written by write_node_template,
    uncommenting the key's example line if needed."""
    text = path.read_text()
    pattern = re.compile(rf"^(# )?{re.escape(key)} = .*$", re.MULTILINE)
    assert len(pattern.findall(text)) == 1, f"{key} is not a unique key line of {path}"
    path.write_text(pattern.sub(lambda _: f"{key} = {value}", text))


def remove_key(path: Path, key: str) -> None:
    text = path.read_text()
    pattern = re.compile(rf"^{re.escape(key)} = .*\n", re.MULTILINE)
    assert len(pattern.findall(text)) == 1
    path.write_text(pattern.sub("", text))


def write_ca_certificate(path: Path, *, days: int = 30) -> None:
    """A self-signed CA certificate (PEM), as a coordinator would send its sites."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test coordinator CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
