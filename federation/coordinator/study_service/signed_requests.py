"""The service's check of what a researcher sends: signed by the logged-in key, and as signed.

The sites check every message again (federation/site/authorization.py, with the
approval in their ledgers); the service checks first so that it starts nothing for a
request that does not come from the researcher who logged in, and so that its log
names the right person.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from federation.analytics.query import Query
from federation.protocol.authorization import (
    FROM_RANGES,
    QUERIES,
    STUDY,
    Authorization,
    query_hash,
    sha256_text,
    spec_hash,
)
from federation.protocol.query_request import QueryRequest
from federation.protocol.spec import TrainingSpec
from federation.training.features import FeatureEncoder
from privacy_budgets.signatures import (
    REQUEST_NAMESPACE,
    DocumentInvalid,
    SignatureInvalid,
    canonical_bytes,
    check_document,
    verify,
)

from .errors import ServiceError

RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # it names a folder at the coordinator
SIGN_FIX = "sign the request with the key you logged in with (workbench.service_client signs it for you)"


def _bad(rule: str, value: Any, fix: str = SIGN_FIX, *, status: int = 422, code: str = "invalid-request"):
    return ServiceError(status=status, code=code, rule=rule, value=value, fix=fix)


def check_run_id(run_id: str) -> None:
    if not RUN_ID.match(run_id):
        raise _bad(
            "a run id is 1 to 64 letters, digits, '-' or '_' (it names the run's folder)",
            repr(run_id[:80]),
            "make the request again with the workbench (it makes run ids of this form)",
        )


def authorization_of(data: Any) -> Authorization:
    if not isinstance(data, dict) or not isinstance(data.get("document"), dict) or not data.get("signature"):
        raise _bad("a request carries the researcher's authorization: {document, signature}", "missing or malformed")
    return Authorization(document=data["document"], signature=str(data["signature"]))


def check_signed_by(authorization: Authorization, *, fingerprint: str) -> None:
    """The document's times and format hold, and the logged-in key signed it."""
    try:
        check_document(authorization.document, namespace=REQUEST_NAMESPACE, now=datetime.now(UTC))
        verified = verify(canonical_bytes(authorization.document), authorization.signature, namespace=REQUEST_NAMESPACE)
    except (DocumentInvalid, SignatureInvalid, ValueError) as err:
        raise _bad("a request's signature verifies over its document", " ".join(str(err).split())[:300]) from None
    if verified.key.fingerprint != fingerprint:
        raise ServiceError(
            status=403,
            code="not-your-signature",
            rule="the service accepts only requests signed by the researcher who logged in",
            value=f"signed by {verified.key.fingerprint}, logged in as {fingerprint}",
            fix=SIGN_FIX,
        )


def checked_study(data: Any, *, fingerprint: str) -> tuple[TrainingSpec, dict[str, Any], str, Authorization]:
    """(spec, its config, encoder JSON, authorization) of a study body, each as the researcher signed it."""
    if not isinstance(data, dict):
        raise _bad("a study is a JSON object {spec, encoder, authorization}", type(data).__name__)
    spec_config, encoder_json = data.get("spec"), data.get("encoder")
    if not isinstance(spec_config, dict) or not isinstance(encoder_json, str):
        raise _bad("a study carries its spec (an object) and its feature encoder (JSON text)", "missing", "resend it")
    try:
        spec = TrainingSpec.from_config(spec_config)
        FeatureEncoder.from_json(encoder_json)
    except (ValueError, KeyError, TypeError) as err:
        raise _bad(
            "a study's spec and encoder follow the workbench's format", " ".join(str(err).split())[:300]
        ) from None
    check_run_id(spec.run_id)
    authorization = authorization_of(data.get("authorization"))
    check_signed_by(authorization, fingerprint=fingerprint)
    document, task = authorization.document, authorization.document.get("task") or {}
    mismatches = [
        name
        for name, ok in (
            ("kind", task.get("kind") == STUDY),
            ("run_id", task.get("run_id") == spec.run_id),
            ("spec", task.get("spec") == spec_hash(spec_config)),
            ("encoder", task.get("encoder") in (sha256_text(encoder_json), FROM_RANGES)),
            ("max_rounds", task.get("max_rounds") == spec.rounds),
            ("project", document.get("project") == spec.project),
        )
        if not ok
    ]
    if mismatches:
        raise _bad("a study is sent exactly as it was signed", f"differs in {', '.join(mismatches)}")
    return spec, spec_config, encoder_json, authorization


def checked_queries(data: Any, *, fingerprint: str) -> list[QueryRequest]:
    """The query requests of a batch body, each as the researcher signed the batch."""
    items = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise _bad("a query batch is {requests: [...]} with at least one query", "none given", "send one or more")
    try:
        queries = [Query.from_json(str(item["query"])) for item in items]
        projects = {str(item["project"]) for item in items}
        run_ids = {str(item["run_id"]) for item in items}
    except (KeyError, TypeError, ValueError) as err:
        raise _bad("each query carries {query, project, run_id}", " ".join(str(err).split())[:300]) from None
    if len(projects) != 1 or len(run_ids) != 1:
        raise _bad(
            "a batch charges one project under one run id", f"projects {sorted(projects)}, runs {sorted(run_ids)}"
        )
    check_run_id(next(iter(run_ids)))
    authorization = authorization_of(items[0].get("authorization"))
    if any(authorization_of(item.get("authorization")) != authorization for item in items):
        raise _bad("every query of a batch carries the batch's one signature", "they differ")
    check_signed_by(authorization, fingerprint=fingerprint)
    task = authorization.document.get("task") or {}
    (project,), (run_id,) = projects, run_ids
    if (
        task.get("kind") != QUERIES
        or task.get("run_id") != run_id
        or authorization.document.get("project") != project
        or task.get("queries") != [query_hash(q.canonical()) for q in queries]
    ):
        raise _bad("a query batch is sent exactly as it was signed", "its queries, run id or project differ")
    return [
        QueryRequest(
            query=q, project=project, actor=f"researcher {fingerprint}", run_id=run_id, authorization=authorization
        )
        for q in queries
    ]
