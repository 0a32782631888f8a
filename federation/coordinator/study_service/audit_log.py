"""Who asked the study service for what: a hash-chained, append-only log (JSON lines).

Each line carries the hash of the line before it (``prev``) and its own ``hash``
(sha256 of ``prev`` and the line's canonical JSON without ``hash``), so a line
changed, removed or inserted breaks the chain from there on. At every start of the
service and every ``head_every`` lines, the service appends a *head*: the hash of the
chain so far, signed with its certificate's key (ECDSA, SHA-384). Anyone who trusts
the coordinator's CA can check a head against ``tls/service.pem``; a head copied
elsewhere (a site, an auditor) pins everything before it.

>>> log = AuditLog.open(path=tmp / "audit.jsonl", key=key)   # doctest: +SKIP
>>> log.append(who="SHA256:...", action="start_study", detail={"study": "abc"})  # doctest: +SKIP
>>> verify_log(path=tmp / "audit.jsonl", certificate=tmp / "service.pem")        # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from federation.errors import InternalFault

GENESIS = "0" * 64
HEAD = "head"


class AuditLogBroken(InternalFault):
    """The log's chain or a signed head does not verify: it was changed."""


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def line_hash(entry: dict[str, Any]) -> str:
    """sha256 over the previous hash and the line without its own ``hash``."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(str(body.get("prev", "")).encode() + b"\n" + _canonical(body)).hexdigest()


def _head_bytes(*, seq: int, head: str, time_: float) -> bytes:
    return _canonical({"kind": HEAD, "seq": seq, "head": head, "time": time_})


@dataclass
class AuditLog:
    """The open log: appends are serialised and fsynced; ``last`` is the chain's tip."""

    path: Path
    key: ec.EllipticCurvePrivateKey
    head_every: int
    seq: int
    last: str
    since_head: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @classmethod
    def open(cls, *, path: Path, key: ec.EllipticCurvePrivateKey, head_every: int = 50) -> AuditLog:
        """Open (or start) the log, verify the chain it holds, and sign a head for this start."""
        if head_every < 1:
            raise ValueError(f"head_every must be a whole number >= 1 (lines between signed heads); got {head_every}.")
        entries = read_chain(path)
        log = cls(
            path=path,
            key=key,
            head_every=head_every,
            seq=entries[-1]["seq"] if entries else 0,
            last=entries[-1]["hash"] if entries else GENESIS,
        )
        log.sign_head(reason="service started")
        return log

    def _write(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"seq": self.seq + 1, "time": round(time.time(), 3), **entry, "prev": self.last}
        entry["hash"] = line_hash(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.seq, self.last = entry["seq"], entry["hash"]
        return entry

    def append(self, *, who: str, action: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request: who (a key fingerprint, or "anonymous"), what, and its details."""
        with self._lock:
            entry = self._write({"kind": "request", "who": who, "action": action, "detail": detail or {}})
            self.since_head += 1
            if self.since_head >= self.head_every:
                self._sign_head_locked(reason=f"every {self.head_every} lines")
            return entry

    def sign_head(self, *, reason: str) -> dict[str, Any]:
        with self._lock:
            return self._sign_head_locked(reason=reason)

    def _sign_head_locked(self, *, reason: str) -> dict[str, Any]:
        now = round(time.time(), 3)
        signature = self.key.sign(_head_bytes(seq=self.seq, head=self.last, time_=now), ec.ECDSA(hashes.SHA384()))
        self.since_head = 0
        return self._write(
            {
                "kind": HEAD,
                "head_of": self.seq,
                "head": self.last,
                "head_time": now,
                "reason": reason,
                "signature": base64.b64encode(signature).decode(),
            }
        )


def read_chain(path: Path) -> list[dict[str, Any]]:
    """Every line of the log, the chain checked (AuditLogBroken naming the first bad line)."""
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AuditLogBroken(f"{path}: line {number} is not JSON; the log was changed or cut.") from None
        if entry.get("prev") != prev or line_hash(entry) != entry.get("hash") or entry.get("seq") != number:
            raise AuditLogBroken(
                f"{path}: line {number} breaks the hash chain (its prev, hash or seq does not follow line "
                f"{number - 1}); the log was changed after it was written. Keep the file for inspection and "
                "move it aside to start a new log."
            )
        entries.append(entry)
        prev = entry["hash"]
    return entries


def verify_log(*, path: Path, certificate: Path) -> list[dict[str, Any]]:
    """Check the chain and every signed head against the service's certificate; the
    heads. Raises AuditLogBroken at the first line or head that does not verify."""
    public = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    entries = read_chain(path)
    by_seq = {e["seq"]: e for e in entries}
    heads = []
    for entry in entries:
        if entry.get("kind") != HEAD:
            continue
        of = int(entry["head_of"])
        expected = by_seq[of]["hash"] if of else GENESIS
        if entry["head"] != expected:
            raise AuditLogBroken(f"{path}: the head at line {entry['seq']} does not name line {of}'s hash.")
        try:
            public.verify(
                base64.b64decode(entry["signature"]),
                _head_bytes(seq=of, head=entry["head"], time_=entry["head_time"]),
                ec.ECDSA(hashes.SHA384()),
            )
        except (InvalidSignature, ValueError):
            raise AuditLogBroken(
                f"{path}: the head at line {entry['seq']} is not signed by the key of {certificate}."
            ) from None
        heads.append(entry)
    return heads
