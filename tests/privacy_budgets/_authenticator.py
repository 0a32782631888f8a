"""Signatures built byte by byte from OpenSSH's PROTOCOL.sshsig and PROTOCOL.u2f, with
ordinary keys playing a FIDO authenticator: independent of the code under test."""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from privacy_budgets.signatures import SshPublicKey


def string(data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return struct.pack(">I", len(data)) + data


def mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return string(b"\x00" + raw if raw and raw[0] & 0x80 else raw)


def sshsig_blob(public_blob: bytes, signature: bytes, *, namespace: str, algorithm: str = "sha512") -> str:
    blob = b"SSHSIG" + struct.pack(">I", 1) + string(public_blob) + string(namespace)
    blob += string(b"") + string(algorithm) + string(signature)
    return base64.b64encode(blob).decode()


def to_be_signed(message: bytes, *, namespace: str, algorithm: str = "sha512") -> bytes:
    digest = hashlib.new(algorithm, message).digest()
    return b"SSHSIG" + string(namespace) + string(b"") + string(algorithm) + string(digest)


class Authenticator:
    """An ordinary key playing a FIDO authenticator, as PROTOCOL.u2f describes one."""

    def __init__(self, kind: str, application: str = "ssh:") -> None:
        self.kind, self.application = kind, application
        if kind == "sk-ssh-ed25519@openssh.com":
            self.private = Ed25519PrivateKey.generate()
            raw = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.public_blob = string(kind) + string(raw) + string(application)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            point = self.private.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            self.public_blob = string(kind) + string("nistp256") + string(point) + string(application)

    @property
    def public(self) -> SshPublicKey:
        return SshPublicKey.from_blob(self.public_blob)

    def sign(
        self, message: bytes, *, namespace: str, flags: int = 0x01, counter: int = 7, application=None, sig_type=None
    ) -> str:
        data = to_be_signed(message, namespace=namespace)
        app = (application or self.application).encode()
        signed = hashlib.sha256(app).digest() + bytes([flags]) + struct.pack(">I", counter)
        signed += hashlib.sha256(data).digest()
        if self.kind == "sk-ssh-ed25519@openssh.com":
            raw = self.private.sign(signed)
        else:
            r, s = decode_dss_signature(self.private.sign(signed, ec.ECDSA(hashes.SHA256())))
            raw = mpint(r) + mpint(s)
        signature = string(sig_type or self.kind) + string(raw) + bytes([flags]) + struct.pack(">I", counter)
        return sshsig_blob(self.public_blob, signature, namespace=namespace)
