"""The gate's check of who asks: a researcher's signed request, before any work.

A message may carry a request document and its signature (federation/protocol/
authorization.py). The site, in order:

1. refuses a message without one when its policy requires signed requests
   (``[policy] require_signed_requests``);
2. verifies the signature (SSHSIG, namespace ``hospital-dp-workbench/request@v1``),
   the document's format, nonce and times (not expired), and that it names this site
   if it names sites;
3. checks the message charges the project the document names;
4. looks the signing key up in the site's ledger: an ``approve`` entry for the
   project on this site's dataset must list it (the board's quorum decided it);
5. checks the message is what was signed: for a study, the spec's hash, the run id,
   the encoder's hash and a round within the signed maximum; for a query, the run
   id and the query's hash among the signed ones;
6. records the step in the site's replay memory (request_uses.py): a step served
   once under a signature is refused the second time; a study's rounds are counted.

Steps 2 and 4 are refused in the same words whether or not the project or the key is
known here: a party that cannot sign as an approved researcher learns nothing about
which projects or researchers this site knows. Once the signature verifies and the key
is approved, the refusals say exactly what does not match (the signer knows it anyway).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from federation.errors import InternalFault, PolicyRefused, RequestExpired
from federation.protocol.authorization import (
    FROM_RANGES,
    LOCAL_TUNING,
    QUERIES,
    STUDY,
    Authorization,
    query_hash,
    sha256_text,
)
from federation.protocol.authorization import spec_hash as hash_of_spec
from federation.protocol.local_tuning import ENCODER_KEY, tuning_hash
from federation.protocol.task_kinds import QUERY_PREFIX, RANGES, TUNE
from federation.site.request_uses import StepsExhausted, StepUsed, record_use
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger
from privacy_budgets.errors import PrivacyBudgetError
from privacy_budgets.signatures import DocumentInvalid, SignatureInvalid, parse_document_time, verify_request

SIGN_FIX = (
    "Fix: the researcher makes a key with `workbench researcher init`, the site's ethics board approves it "
    "for the project (`workbench budget propose approve`), and the researcher sends the study or queries "
    "with it (Workbench.connect(..., researcher=KEY))."
)
# The same words for an unknown key, an unapproved key and an unknown project.
NOT_APPROVED = (
    "this site serves signed requests only from researchers its ethics board approved for the project the "
    "request names; this request's signature is not from one of them. Nothing was run or charged. "
    "Fix: ask the site's ethics board to approve your public key for the project "
    "(`workbench budget propose approve --researcher NAME=KEY.pub`), then sign the request again."
)


class Unauthorized(PolicyRefused):
    """The request is not signed by a researcher approved here, or not as it was signed (sent as "policy")."""


@dataclass(frozen=True)
class Researcher:
    """Who signed a request the site accepted: the approved name, key and the request's id."""

    name: str
    fingerprint: str
    request_id: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "key": self.fingerprint, "request": self.request_id[:16]}


def check_authorization(
    *, kind: str, config: dict[str, Any], project: str | None, site: SiteConfig, required: bool
) -> Researcher | None:
    """The researcher behind this message (None: unsigned, allowed by this site's policy).

    Raises Unauthorized or RequestExpired (nothing recorded), or InternalFault when the
    site cannot read its own ledger or replay memory."""
    try:
        auth = Authorization.from_config(config)
    except ValueError as err:
        text = f"the request's signature cannot be read: {err} Nothing was run or charged. {SIGN_FIX}"
        raise Unauthorized(text, public=text) from None
    if auth is None:
        if not required:
            return None
        text = (
            f"site {site.site_id} serves only requests signed by a researcher its ethics board approved; this "
            f"{kind} request carries no signature. Nothing was run or charged. {SIGN_FIX}"
        )
        raise Unauthorized(text, public=text)
    now = datetime.now(UTC)
    document = auth.document
    try:
        verified = verify_request(document, auth.signature, site_id=site.site_id, now=now)
    except DocumentInvalid as err:
        if "expired" in str(err):
            raise RequestExpired(str(err), public=str(err)) from None
        text = f"the signed request breaks a rule of its format: {err}"
        raise Unauthorized(text, public=text) from None
    except SignatureInvalid as err:
        text = (
            "the request's signature does not verify: the request was changed after the researcher signed it, "
            "or the signature belongs to another request. Nothing was run or charged. Fix: sign the request "
            "again and send it unchanged."
        )
        raise Unauthorized(f"{text} ({err})", public=text) from None
    if document.get("project") != project:
        text = (
            f"the message charges project {project!r}, but the researcher signed a request for "
            f"{document.get('project')!r}: a relay changed it. Nothing was run or charged."
        )
        # The signature verified, but the approval is not checked yet: the public words
        # name only the two projects the requester itself sent.
        raise Unauthorized(text, public=text)
    key_line = verified.key.openssh(comment=False)
    name = _approved_name(site=site, project=str(project), key_line=key_line, fingerprint=verified.key.fingerprint)
    researcher = Researcher(name=name, fingerprint=verified.key.fingerprint, request_id=auth.request_id)
    task = document.get("task") if isinstance(document.get("task"), dict) else {}
    step, family, allowed = _step(kind=kind, config=config, task=task)
    expires = parse_document_time(document.get("expires"), field="expires")
    try:
        record_use(
            state_dir=site.state_dir,
            request=auth.request_id,
            step=step,
            family=family,
            allowed=allowed,
            researcher=verified.key.fingerprint,
            expires=expires,
            now=now,
        )
    except StepUsed:
        text = (
            f"this {kind} step ({step}) was already served under researcher {name}'s signed request "
            f"{auth.request_id[:16]}; a signed request is served once per step (replay refused). Nothing was "
            "run or charged. Fix: the researcher signs a new request."
        )
        raise Unauthorized(text, public=text) from None
    except StepsExhausted as done:
        what = (
            f"{done.used} training round(s), all the signed request allows (max_rounds {task.get('max_rounds')})"
            if family == "train"
            else f"{done.used} time(s) already, all the signed request allows (replay refused)"
        )
        text = (
            f"researcher {name}'s signed request {auth.request_id[:16]} was used for {family} {what}. Nothing "
            "was run or charged. Fix: the researcher signs a new request for more."
        )
        raise Unauthorized(text, public=text) from None
    except Exception as err:  # sqlite3.Error and the disk: the site's own trouble
        raise InternalFault(f"site {site.site_id} cannot write its replay memory of signed requests: {err}") from None
    return researcher


def not_approved(fingerprint: str) -> str:
    """The public words for an unknown key, an unapproved key or an unknown project: the
    rule, the value (the signing key, which the requester sent) and the fix."""
    return f"{NOT_APPROVED} (signing key {fingerprint})"


def _approved_name(*, site: SiteConfig, project: str, key_line: str, fingerprint: str) -> str:
    """The approved researcher's name, or Unauthorized in words that reveal nothing."""
    public = not_approved(fingerprint)
    if not site.ledger_path.exists():
        raise Unauthorized(f"{NOT_APPROVED} (no ledger at this site; key {fingerprint})", public=public)
    try:
        with Ledger.open(site.ledger_path, site_id=site.site_id, create=False) as ledger:
            approval = ledger.approval(dataset=site.dataset, project=project)
    except (PrivacyBudgetError, OSError) as err:
        raise InternalFault(f"site {site.site_id} cannot read its ledger, so it serves nothing: {err}") from None
    if approval is None:
        raise Unauthorized(
            f"{NOT_APPROVED} (project {project!r} has no approval on dataset {site.dataset!r}; key {fingerprint})",
            public=public,
        )
    for item in approval.researchers:
        if item["key"] == key_line:
            return str(item["name"])
    raise Unauthorized(
        f"{NOT_APPROVED} (key {fingerprint} is not among the {len(approval.researchers)} researcher(s) the "
        f"approval at ledger seq {approval.seq} lists for project {project!r})",
        public=public,
    )


def _step(*, kind: str, config: dict[str, Any], task: dict[str, Any]) -> tuple[str, str, int]:
    """(step, family, allowed) for this message, once it matches the signed task."""
    if kind.startswith(QUERY_PREFIX) and kind != f"{QUERY_PREFIX}{RANGES}":
        _expect(task.get("kind") == QUERIES, f"a {kind} message under a signed {task.get('kind')!r} request")
        _expect(str(config.get("run-id")) == str(task.get("run_id")), "a query run id other than the signed one")
        text = config.get("query")
        signed = task.get("queries") if isinstance(task.get("queries"), list) else []
        digest = _query_digest(text)
        _expect(digest is not None and digest in signed, "a query the researcher did not sign")
        return f"{kind}:{digest}:{uuid.uuid4().hex}", f"{kind}:{digest}", signed.count(digest)
    if kind == TUNE:
        return _tuning_step(config=config, task=task)
    _expect(task.get("kind") == STUDY, f"a {kind} message under a signed {task.get('kind')!r} request")
    from federation.protocol.spec import SpecError, TrainingSpec

    try:
        spec = TrainingSpec.from_config(config)
    except (SpecError, TypeError, ValueError) as err:
        raise Unauthorized(
            f"the study's spec cannot be read: {err}", public="the study's spec cannot be read."
        ) from None
    _expect(hash_of_spec(spec.to_config()) == task.get("spec"), "a study spec other than the signed one")
    _expect(spec.run_id == task.get("run_id"), "a run id other than the signed one")
    max_rounds = task.get("max_rounds")
    _expect(isinstance(max_rounds, int) and max_rounds >= 1, "a signed maximum of rounds that is not a whole number")
    if kind == f"{QUERY_PREFIX}{RANGES}":
        _expect(task.get("encoder") == FROM_RANGES, "a range finding in a study whose encoder was signed")
        return "ranges", "ranges", 1
    encoder = config.get("feature-encoder")
    if task.get("encoder") != FROM_RANGES:
        _expect(
            isinstance(encoder, str) and sha256_text(encoder) == task.get("encoder"),
            "a feature encoder other than the signed one",
        )
    server_round = config.get("server-round")
    _expect(isinstance(server_round, int) and not isinstance(server_round, bool), "no round number")
    family = "train" if kind == "train" else "evaluate"
    return f"{family}:{server_round}", family, int(max_rounds)


def _tuning_step(*, config: dict[str, Any], task: dict[str, Any]) -> tuple[str, str, int]:
    """A local tuning matches its signed task: spec, run id, encoder and the tuning
    itself (candidates, mean, shape); it is served once."""
    from federation.protocol.spec import SpecError, TrainingSpec

    _expect(task.get("kind") == LOCAL_TUNING, f"a tune message under a signed {task.get('kind')!r} request")
    try:
        spec = TrainingSpec.from_config(config)
    except (SpecError, TypeError, ValueError) as err:
        raise Unauthorized(
            f"the local tuning's spec cannot be read: {err}", public="the local tuning's spec cannot be read."
        ) from None
    _expect(hash_of_spec(spec.to_config()) == task.get("spec"), "a study spec other than the signed one")
    _expect(spec.run_id == task.get("run_id"), "a run id other than the signed one")
    encoder = config.get(ENCODER_KEY)
    _expect(
        isinstance(encoder, str) and sha256_text(encoder) == task.get("encoder"),
        "a feature encoder other than the signed one",
    )
    _expect(tuning_hash(config) == task.get("tuning"), "candidates or a number of runs other than the signed ones")
    return "tune", "tune", 1


def _query_digest(text: Any) -> str | None:
    from federation.analytics.query import Query

    try:
        return query_hash(Query.from_json(str(text)).canonical())
    except Exception:  # an unreadable query matches no signed one
        return None


def _expect(ok: bool, what: str) -> None:
    if not ok:
        text = (
            f"the message is not what the researcher signed: it carries {what}. A relay changed it; nothing was "
            "run or charged. Fix: send the study or queries again from the workbench that signed them."
        )
        raise Unauthorized(text, public=text)
