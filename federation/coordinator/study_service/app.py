"""The study service's routes (FastAPI); see the package docstring for what each does.

Every route but ``/health`` and the two login routes needs a bearer token
(``Authorization: Bearer TOKEN``): none or an unknown one is 401 ``login-required``,
an expired one 401 ``session-expired``. A study or batch of another researcher is
404, as one that does not exist. Bodies over ``max_body`` bytes are 413 before they
are read whole. Every request that does something is written to the audit log.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from federation.coordinator import study_runs
from federation.coordinator.registry import registered_nodes
from federation.coordinator.run_folder import StudyFile
from federation.coordinator.superlink import Coordinator
from federation.errors import BadInput

from .audit_log import AuditLog
from .errors import ServiceError, not_found
from .sessions import LoginRefused, Session, Sessions
from .signed_requests import checked_queries, checked_study
from .studies import Studies

log = logging.getLogger("study_service")

MAX_BODY = 1 << 20  # bytes: a study's spec and encoder are a few KiB, a batch of queries less
MAX_WAIT = 25.0  # seconds an events request may wait for a new event
MAX_TIMEOUT = 24 * 3600.0  # a study's or batch's own timeout, at most
MAX_QUERY_TIMEOUT = 600.0  # a batch is answered within one request


@dataclass
class ServiceState:
    coordinator: Coordinator
    sessions: Sessions
    studies: Studies
    audit: AuditLog
    max_body: int = MAX_BODY


class BodyLimit:
    """ASGI middleware: refuse a body over ``limit`` bytes (by Content-Length, or while it streams)."""

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit, declared.decode(errors="replace"))(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit, f"more than {self.limit}")(scope, receive, send)


class _BodyTooLarge(BadInput):
    """A body that grew past the limit while it streamed."""


def _too_large(limit: int, value: str) -> JSONResponse:
    error = ServiceError(
        status=413,
        code="body-too-large",
        rule=f"a request body is at most {limit} bytes",
        value=f"{value} bytes",
        fix="send fewer queries per batch (a study's spec and encoder are a few KiB)",
    )
    return JSONResponse(error.body(), status_code=error.status)


def _number(value: Any, *, name: str, low: float, high: float, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high:
        raise ServiceError(
            status=422,
            code="invalid-request",
            rule=f"{name} is a number of seconds from {low:g} to {high:g}",
            value=repr(value),
            fix=f"send a {name} in that range",
        )
    return number


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ServiceError(
            status=400, code="invalid-json", rule="a request body is JSON", value="not JSON", fix="send JSON"
        ) from None


def create_app(state: ServiceState) -> FastAPI:
    app = FastAPI(title="hospital DP workbench: study service", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ServiceError)
    async def _refused(request: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(Exception)
    async def _fault(request: Request, error: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("incident %s on %s %s", incident, request.method, request.url.path)
        body = ServiceError(
            status=500,
            code="internal",
            rule="the service could not complete this request",
            value=f"incident {incident}",
            fix="try again; if it persists, give the incident id to the coordinator's operator",
        ).body()
        return JSONResponse(body, status_code=500)

    def session_of(request: Request) -> Session:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        found = state.sessions.session(token) if token else None
        if found is False:
            raise ServiceError(
                status=401,
                code="session-expired",
                rule=f"a session lasts {state.sessions.token_ttl:g} s",
                value="this token expired",
                fix="log in again (the client does it once by itself)",
            )
        if not found:
            raise ServiceError(
                status=401,
                code="login-required",
                rule="the study service serves only researchers who logged in with their key",
                value="no valid bearer token",
                fix="log in: POST /login/challenge, sign the nonce, POST /login (workbench.service_client.login)",
            )
        return found

    def record(who: str, action: str, **detail: Any) -> None:
        state.audit.append(who=who, action=action, detail=detail)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"service": "study-service", "ok": True}

    @app.post("/login/challenge")
    async def challenge() -> dict[str, Any]:
        nonce, ttl = state.sessions.challenge()
        return {"nonce": nonce, "expires_in": ttl}

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("nonce"), str) or not body.get("signature"):
            raise ServiceError(
                status=422, code="invalid-request", rule="a login is {nonce, signature}", value="missing", fix="resend"
            )
        try:
            session = state.sessions.login(nonce=body["nonce"], signature=str(body["signature"]))
        except LoginRefused as err:
            record("anonymous", "login_refused", rule=err.rule, value=err.value)
            raise ServiceError(status=401, code="login-refused", rule=err.rule, value=err.value, fix=err.fix) from None
        record(session.fingerprint, "login", key=session.key)
        return {"token": session.token, "expires_in": state.sessions.token_ttl, "fingerprint": session.fingerprint}

    @app.get("/sites")
    async def sites(request: Request) -> dict[str, Any]:
        session_of(request)
        nodes = await asyncio.to_thread(registered_nodes, state.coordinator)
        return {"sites": [{"site": n.name, "registered_at": n.registered_at} for n in nodes.values()]}

    @app.post("/studies", status_code=201)
    async def start_study(request: Request) -> dict[str, Any]:
        session = session_of(request)
        body = await _json(request)
        try:
            spec, spec_config, encoder_json, authorization = checked_study(body, fingerprint=session.fingerprint)
        except ServiceError as err:
            record(session.fingerprint, "study_refused", code=err.code, value=err.value)
            raise
        timeout = _number(body.get("timeout"), name="timeout", low=10, high=MAX_TIMEOUT, default=1800.0)
        site_timeout = _number(body.get("site_timeout"), name="site_timeout", low=5, high=MAX_TIMEOUT, default=600.0)
        n_sites = body.get("n_sites")
        registered = len(registered_nodes(state.coordinator))
        if n_sites is not None and (not isinstance(n_sites, int) or not 1 <= n_sites <= max(registered, 1)):
            raise ServiceError(
                status=422,
                code="invalid-request",
                rule=f"n_sites is how many of the {registered} registered sites a study waits for",
                value=repr(n_sites),
                fix="leave it out (every registered site) or give a number in that range",
            )
        record(session.fingerprint, "start_study", study=spec.run_id, project=spec.project)
        try:
            started = await asyncio.to_thread(
                state.studies.start,
                owner=session.fingerprint,
                key=session.key,
                spec_config=spec_config,
                encoder_json=encoder_json,
                authorization=authorization,
                n_sites=n_sites,
                site_timeout=site_timeout,
                timeout=timeout,
            )
        except FileExistsError:
            raise ServiceError(
                status=409,
                code="run-id-used",
                rule="each study has a run id of its own",
                value=f"run id {spec.run_id} was used before",
                fix="make a new study (a new TrainingSpec has a new run id) and sign it",
            ) from None
        return {"study": started.study, "events": f"/studies/{started.study}/events"}

    @app.get("/studies")
    async def list_studies(request: Request) -> dict[str, Any]:
        session = session_of(request)
        rows = await asyncio.to_thread(state.studies.studies_of, session.fingerprint)
        record(session.fingerprint, "list_studies", count=len(rows))
        return {"studies": rows}

    def owned(request: Request, study: str, action: str, **detail: Any):
        session = session_of(request)
        found = state.studies.get(study, owner=session.fingerprint)
        if found is None:
            record(session.fingerprint, f"{action}_refused", study=study[:80], **detail)
            raise not_found(f"study {study[:80]!r}")
        return session, found

    @app.get("/studies/{study}")
    async def study_request(request: Request, study: str) -> dict[str, Any]:
        """The study as its researcher signed it (spec, encoder, signature): what a client
        that did not start it in this process needs to follow it and rebuild its model."""
        session, found = owned(request, study, "study")
        record(session.fingerprint, "study", study=study)
        if not found.folder.study_path.exists():  # its run folder is claimed, its study file not yet written
            raise ServiceError(
                status=409,
                code="not-started",
                rule="a study's request is served once the service started its run",
                value=f"study {study} is still starting",
                fix="ask again in a moment",
            )
        stored = StudyFile.load(found.folder.study_path)
        return {
            "study": study,
            "project": found.project,
            "spec": stored.spec.to_config(),
            "encoder": stored.encoder.to_json(),
            "authorization": None if stored.authorization is None else stored.authorization.to_json(),
            "ended": found.ended,
        }

    @app.get("/studies/{study}/events")
    async def events(request: Request, study: str, after: int = 0, wait: float = 0.0) -> dict[str, Any]:
        _, found = owned(request, study, "events")
        wait = _number(wait, name="wait", low=0, high=MAX_WAIT, default=0.0)
        deadline = asyncio.get_running_loop().time() + wait
        while len(found.events) <= after and not found.ended and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)  # a long poll that holds no thread
        return {"study": study, "events": found.events[max(after, 0) :], "ended": found.ended}

    @app.get("/studies/{study}/result")
    async def result(request: Request, study: str) -> dict[str, Any]:
        session, found = owned(request, study, "result")
        if not found.ended:
            raise ServiceError(
                status=409,
                code="not-ended",
                rule="a study's result exists once it ended",
                value=f"study {study} still runs",
                fix="follow its events until the 'end' event (events?after=N&wait=20)",
            )
        record(session.fingerprint, "result", study=study)
        end = found.events[-1]
        spec = StudyFile.load(found.folder.study_path)
        rounds = [e["report"] for e in found.events if e["kind"] == "round"]
        return {
            "study": study,
            **{k: v for k, v in end.items() if k not in ("seq", "time", "kind")},
            "rounds": rounds,
            "spec": spec.spec.to_config(),
            "encoder": spec.encoder.to_json(),
        }

    @app.get("/studies/{study}/model")
    async def model(request: Request, study: str) -> Response:
        import numpy as np

        session, found = owned(request, study, "model")
        if not found.ended or not found.events[-1].get("model"):
            raise ServiceError(
                status=409,
                code="no-model",
                rule="a model exists once a study finished with at least one trained round",
                value=f"study {study}: {found.events[-1].get('status') if found.ended else 'still runs'}",
                fix="follow its events; a refused, failed or cancelled study trained nothing to return",
            )
        record(session.fingerprint, "model", study=study)
        arrays = await asyncio.to_thread(study_runs.model_arrays, folder=found.folder)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # numeric arrays only: np.load(..., allow_pickle=False) reads it
        return Response(buffer.getvalue(), media_type="application/octet-stream")

    @app.delete("/studies/{study}")
    async def cancel(request: Request, study: str) -> dict[str, Any]:
        session, found = owned(request, study, "cancel")
        record(session.fingerprint, "cancel", study=study)
        said = await asyncio.to_thread(state.studies.cancel, found, who=session.fingerprint)
        return {"study": study, "said": said}

    @app.post("/queries")
    async def queries(request: Request) -> dict[str, Any]:
        session = session_of(request)
        body = await _json(request)
        try:
            requests = checked_queries(body, fingerprint=session.fingerprint)
        except ServiceError as err:
            record(session.fingerprint, "queries_refused", code=err.code, value=err.value)
            raise
        costs = bool(body.get("costs", False))
        timeout = _number(body.get("timeout"), name="timeout", low=5, high=MAX_QUERY_TIMEOUT, default=300.0)
        record(
            session.fingerprint,
            "query_costs" if costs else "queries",
            run_id=requests[0].run_id,
            project=requests[0].project,
            queries=[r.query.canonical() for r in requests],
        )
        try:
            answer = await asyncio.to_thread(
                state.studies.run_queries,
                owner=session.fingerprint,
                key=session.key,
                requests=requests,
                costs=costs,
                timeout=timeout,
            )
        except FileExistsError:
            raise ServiceError(
                status=409,
                code="run-id-used",
                rule="each query batch has a run id of its own",
                value=f"run id {requests[0].run_id} was used before",
                fix="sign the batch again under a new run id",
            ) from None
        except (study_runs.RunUnreachable, study_runs.RunFailed, study_runs.RunCancelled) as err:
            raise ServiceError(
                status=502 if isinstance(err, study_runs.RunUnreachable) else 500,
                code="batch-failed",
                rule="a query batch is answered by every registered site within its timeout",
                value=" ".join(str(err).replace(str(state.coordinator.folder), "the coordinator folder").split())[:500],
                fix="check the sites' status with the coordinator's operator, then send the batch again",
            ) from None
        return answer

    @app.get("/budget")
    async def budget(request: Request) -> dict[str, Any]:
        session = session_of(request)
        projects = state.studies.projects_of(session.fingerprint)
        receipts = await asyncio.to_thread(state.studies.receipts, projects=projects)
        record(session.fingerprint, "budget", projects=sorted(projects))
        return {"projects": sorted(projects), "receipts": receipts}

    return BodyLimit(app, limit=state.max_body)  # type: ignore[return-value]
