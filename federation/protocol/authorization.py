"""A researcher's signature on what they ask, as it travels through the coordinator.

The researcher signs a request document once (``privacy_budgets.signatures``, namespace
``hospital-dp-workbench/request@v1``); every message of the study or query batch
carries the document and the signature in its config (``auth-document``,
``auth-signature``), and each site checks the message against what was signed
(federation/site/authorization.py). What a document binds:

- a study: ``{"kind": "study", "run_id", "spec": sha256 of the spec, "encoder": sha256
  of the feature encoder (or "from-ranges" when the study's own DP range finding builds
  it), "max_rounds"}``, for the spec's project;
- a query batch: ``{"kind": "queries", "run_id", "queries": [sha256 of each query's
  canonical text, in order]}``, for one project;
- a local tuning: ``{"kind": "local-tuning", "run_id", "spec", "encoder", "tuning":
  sha256 of its candidates, mean and shape (``local_tuning.tuning_hash``)}``.

Both carry a nonce and an expiry (``new_document``). The coordinator relays the pair; it
cannot change a byte of either without the signature failing at every site.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from privacy_budgets.signatures import REQUEST_NAMESPACE as NAMESPACE
from privacy_budgets.signatures import Signer, canonical_bytes, dearmor, request_document

DOCUMENT_KEY = "auth-document"
SIGNATURE_KEY = "auth-signature"
STUDY = "study"
QUERIES = "queries"
LOCAL_TUNING = "local-tuning"
FROM_RANGES = "from-ranges"  # the encoder is built from the study's own DP range finding
DEFAULT_EXPIRY = timedelta(hours=24)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def spec_hash(spec_config: dict[str, Any]) -> str:
    """sha256 of a spec's config (``TrainingSpec.to_config``), keys sorted."""
    return hashlib.sha256(json.dumps(spec_config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def query_hash(canonical: str) -> str:
    """sha256 of a query's canonical text (``Query.canonical``)."""
    return sha256_text(canonical)


@dataclass(frozen=True)
class Authorization:
    """A signed request document and its signature (base64 of the SSHSIG blob)."""

    document: dict[str, Any]
    signature: str

    @property
    def request_id(self) -> str:
        """sha256 of the signed bytes: names this one signed request exactly."""
        return hashlib.sha256(canonical_bytes(self.document)).hexdigest()

    def to_config(self) -> dict[str, str]:
        return {DOCUMENT_KEY: canonical_bytes(self.document).decode(), SIGNATURE_KEY: self.signature}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Authorization | None:
        """The pair a message carries; None when it carries neither. A message with only
        one of them, or a document that is not JSON, raises ValueError."""
        document, signature = config.get(DOCUMENT_KEY), config.get(SIGNATURE_KEY)
        if document is None and signature is None:
            return None
        if not isinstance(document, str) or not isinstance(signature, str):
            raise ValueError(f"a signed request carries both {DOCUMENT_KEY} and {SIGNATURE_KEY} as text.")
        try:
            parsed = json.loads(document)
        except json.JSONDecodeError as err:
            raise ValueError(f"{DOCUMENT_KEY} is not JSON ({err.msg}).") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"{DOCUMENT_KEY} is not a JSON object.")
        return cls(document=parsed, signature=signature)

    def to_json(self) -> dict[str, Any]:
        return {"document": self.document, "signature": self.signature}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Authorization | None:
        if data is None:
            return None
        return cls(document=dict(data["document"]), signature=str(data["signature"]))


def _signed(signer: Signer, document: dict[str, Any]) -> Authorization:
    import base64

    armored = signer.sign(canonical_bytes(document), namespace=NAMESPACE)
    return Authorization(document=document, signature=base64.b64encode(dearmor(armored)).decode())


def sign_study(
    signer: Signer,
    *,
    project: str,
    run_id: str,
    spec_config: dict[str, Any],
    encoder_json: str | None,
    max_rounds: int,
    expires_in: timedelta = DEFAULT_EXPIRY,
) -> Authorization:
    """The researcher's signature on one study (``encoder_json`` None: range finding builds it)."""
    task = {
        "kind": STUDY,
        "run_id": run_id,
        "spec": spec_hash(spec_config),
        "encoder": FROM_RANGES if encoder_json is None else sha256_text(encoder_json),
        "max_rounds": int(max_rounds),
    }
    return _signed(signer, request_document(project=project, task=task, expires_in=expires_in))


def sign_queries(
    signer: Signer,
    *,
    project: str,
    run_id: str,
    canonical_queries: list[str],
    expires_in: timedelta = DEFAULT_EXPIRY,
) -> Authorization:
    """The researcher's signature on one batch of queries (their canonical texts)."""
    task = {"kind": QUERIES, "run_id": run_id, "queries": [query_hash(q) for q in canonical_queries]}
    return _signed(signer, request_document(project=project, task=task, expires_in=expires_in))


def sign_local_tuning(
    signer: Signer,
    *,
    project: str,
    config: dict[str, Any],
    spec_config: dict[str, Any],
    expires_in: timedelta = DEFAULT_EXPIRY,
) -> Authorization:
    """The researcher's signature on one local tuning (``config``: its message config,
    ``local_tuning.tuning_config``)."""
    from federation.protocol.local_tuning import ENCODER_KEY, tuning_hash

    task = {
        "kind": LOCAL_TUNING,
        "run_id": spec_config["spec-run-id"],
        "spec": spec_hash(spec_config),
        "encoder": sha256_text(str(config[ENCODER_KEY])),
        "tuning": tuning_hash(config),
    }
    return _signed(signer, request_document(project=project, task=task, expires_in=expires_in))
