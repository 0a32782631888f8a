"""A small typed client of the coordinator's study service, for a researcher's own machine.

>>> client = ServiceClient(url="https://coordinator.example.org:9443", ca="ca.crt",  # doctest: +SKIP
...                        identity="~/.ssh/id_ed25519_research")
>>> study = client.start_study(spec_config=spec.to_config(), encoder_json=enc,        # doctest: +SKIP
...                            authorization=sign_study(signer, ...))
>>> end = client.follow(study, on_event=print)                                        # doctest: +SKIP
>>> model = client.model(study)                                                       # doctest: +SKIP

It verifies the service's certificate against the coordinator's CA file (the ``ca.crt``
every site has too), logs in by signing the service's nonce with the researcher's key
(SSHSIG, namespace ``hospital-dp-workbench/login@v1``), and logs in again once by itself
when the session expired. Requests are signed by the researcher before they are sent
(federation/protocol/authorization.py): the service relays them, and every site checks
the signature again. Errors say what happened and what to do: ``ServiceUnreachable``
(down, or a network error), ``CertificateMismatch`` (not the coordinator's CA),
``SessionExpired`` (a login that did not take twice), ``NotYours`` (no such study of
this researcher), ``BadSignedStudy`` (a stored study that is not the one signed), ``ServiceRefused`` (the service's rule, the value and the fix).
"""

from __future__ import annotations

import io
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from federation.errors import BadInput, PartyFailed, Refused
from federation.protocol.authorization import Authorization, sha256_text, spec_hash
from federation.protocol.query_request import QueryRequest
from privacy_budgets.signatures import LOGIN_NAMESPACE, REQUEST_NAMESPACE, Signer, canonical_bytes, verify
from workbench.errors import WorkbenchError

EVENT_WAIT = 20.0  # seconds one events request waits at the service for something new
RECONNECT_FOR = 300.0  # how long follow() keeps trying a service it lost


class ServiceUnreachable(WorkbenchError, PartyFailed):
    """The study service did not answer (down, a wrong address, the network)."""


class CertificateMismatch(WorkbenchError, BadInput):
    """The service's certificate is not from the coordinator's CA given to the client."""


class SessionExpired(WorkbenchError, Refused):
    """The service refused the session, and logging in again did not help."""


class NotYours(WorkbenchError, Refused):
    """No such study of this researcher (another researcher's study looks the same)."""


class BadSignedStudy(WorkbenchError, BadInput):
    """The service handed back a study that is not the one this researcher signed."""


class ServiceRefused(WorkbenchError, Refused):
    """The service refused the request; the message has its rule, the value and the fix."""

    def __init__(self, message: str, *, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.code, self.status = code, status


def login_message(nonce: str) -> bytes:
    """What the researcher signs to log in (the service's sessions.login_message)."""
    return canonical_bytes({"kind": "login", "nonce": nonce, "service": "study-service"})


def _signer_of(identity: str | Path | Signer, passphrase: str | None) -> Signer:
    if hasattr(identity, "sign"):
        return identity  # type: ignore[return-value]
    from workbench.researcher import researcher_signer

    return researcher_signer(key=Path(identity), passphrase=passphrase)


class ServiceClient:
    """The researcher's side of the study service (see the module docstring)."""

    def __init__(
        self,
        *,
        url: str,
        ca: str | Path,
        identity: str | Path | Signer,
        passphrase: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        ca = Path(ca).expanduser()
        if not ca.is_file():
            raise CertificateMismatch(
                f"the client verifies the service against the coordinator's CA certificate; no file at {ca}. "
                "Fix: ask the coordinator's operator for ca.crt (the file every site has) and pass ca=PATH."
            )
        if not url.startswith("https://"):
            raise ServiceRefused(
                f"the study service is reached over HTTPS only; got {url!r}. Fix: use the https:// URL "
                "that `workbench coordinator status` prints."
            )
        self.url = url.rstrip("/")
        self.ca = ca
        self._signer = _signer_of(identity, passphrase)
        self._timeout = timeout
        context = ssl.create_default_context(cafile=str(ca))
        self._http = httpx.Client(base_url=self.url, verify=context, timeout=timeout)
        self._token: str | None = None
        self.fingerprint: str | None = None

    @property
    def signer(self) -> Signer:
        """The researcher's signer: the login, and every study and batch, are signed with it."""
        return self._signer

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the wire ---------------------------------------------------------------------

    def _send(self, method: str, path: str, *, auth: bool = True, read_timeout: float | None = None, **kw: Any):
        timeout = httpx.Timeout(self._timeout, read=read_timeout or self._timeout)
        headers = {"Authorization": f"Bearer {self._token}"} if auth and self._token else {}
        try:
            return self._http.request(method, path, headers=headers, timeout=timeout, **kw)
        except httpx.ConnectError as err:
            if "CERTIFICATE_VERIFY_FAILED" in str(err) or isinstance(err.__cause__, ssl.SSLCertVerificationError):
                raise CertificateMismatch(
                    f"the service at {self.url} shows a certificate that the CA in {self.ca} did not issue "
                    f"({' '.join(str(err).split())[:200]}). Nothing was sent. Fix: check the URL, and use the "
                    "coordinator's own ca.crt (its operator gives it; every site has the same file)."
                ) from None
            raise ServiceUnreachable(
                f"the study service at {self.url} does not answer ({' '.join(str(err).split())[:200]}). "
                "Fix: check the URL and your network; the coordinator's operator starts the service with "
                "`workbench coordinator start` and sees it in `workbench coordinator status`."
            ) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as err:
            raise ServiceUnreachable(
                f"the study service at {self.url} stopped answering ({type(err).__name__}). A study it "
                "started goes on at the coordinator: follow it again with follow(study)."
            ) from None

    def _call(self, method: str, path: str, *, read_timeout: float | None = None, **kw: Any) -> httpx.Response:
        """A request with the session; one new login when the service says the session is gone."""
        if self._token is None:
            self.login()
        response = self._send(method, path, read_timeout=read_timeout, **kw)
        if response.status_code == 401:
            self.login()
            response = self._send(method, path, read_timeout=read_timeout, **kw)
            if response.status_code == 401:
                raise SessionExpired(_message(response))
        if response.status_code == 404 and _code(response) == "not-found":
            raise NotYours(_message(response))
        if response.status_code >= 400:
            raise ServiceRefused(_message(response), code=_code(response), status=response.status_code)
        return response

    # --- logging in -------------------------------------------------------------------

    def login(self) -> str:
        """Sign the service's nonce; keeps the session's token. Returns the key's fingerprint."""
        response = self._send("POST", "/login/challenge", auth=False)
        if response.status_code != 200:
            raise ServiceRefused(_message(response), code=_code(response), status=response.status_code)
        nonce = response.json()["nonce"]
        signature = self._signer.sign(login_message(nonce), namespace=LOGIN_NAMESPACE)
        response = self._send("POST", "/login", auth=False, json={"nonce": nonce, "signature": signature})
        if response.status_code != 200:
            raise ServiceRefused(_message(response), code=_code(response), status=response.status_code)
        data = response.json()
        self._token, self.fingerprint = data["token"], data["fingerprint"]
        return str(self.fingerprint)

    # --- looking ----------------------------------------------------------------------

    def sites(self) -> pd.DataFrame:
        return pd.DataFrame(self._call("GET", "/sites").json()["sites"], columns=["site", "registered_at"])

    def receipts(self) -> list[dict[str, Any]]:
        """The coordinator's mirror of the sites' signed receipts, for this researcher's projects."""
        return list(self._call("GET", "/budget").json()["receipts"])

    def budget(self) -> pd.DataFrame:
        """Per site, dataset and project (this researcher's): the epsilon the receipts report."""
        from workbench.backends.mirror import budget_frame

        return budget_frame(self.receipts())

    # --- studies ----------------------------------------------------------------------

    def start_study(
        self,
        *,
        spec_config: dict[str, Any],
        encoder_json: str,
        authorization: Authorization,
        site_timeout: float = 600.0,
        timeout: float = 1800.0,
        n_sites: int | None = None,
    ) -> str:
        """Start a study the researcher signed (``sign_study``); its id (the signed run id)."""
        body = {
            "spec": spec_config,
            "encoder": encoder_json,
            "authorization": authorization.to_json(),
            "site_timeout": site_timeout,
            "timeout": timeout,
            "n_sites": n_sites,
        }
        return str(self._call("POST", "/studies", json=body).json()["study"])

    def studies(self) -> pd.DataFrame:
        """This researcher's own studies at the service, newest first: ``study``,
        ``project``, ``started`` (UTC), ``status`` (``running`` until its end), ``rounds_done``."""
        rows = self._call("GET", "/studies").json()["studies"]
        frame = pd.DataFrame(rows, columns=["study", "project", "started", "status", "rounds_done"])
        frame["started"] = pd.to_datetime(frame["started"], unit="s", utc=True)
        return frame

    def signed_study(self, study: str) -> tuple[dict[str, Any], str]:
        """The study's spec config and encoder JSON, as the service stored them, checked
        against the researcher's own signature on them (the service is not trusted to
        hand back what was signed): ``BadSignedStudy`` when they differ."""
        data = self._call("GET", f"/studies/{study}").json()
        spec_config, encoder_json = data.get("spec"), data.get("encoder")
        authorization = Authorization.from_json(data.get("authorization"))
        task = {} if authorization is None else dict(authorization.document.get("task") or {})
        try:
            signer = (
                None
                if authorization is None
                else verify(
                    canonical_bytes(authorization.document), authorization.signature, namespace=REQUEST_NAMESPACE
                )
            )
        except ValueError:  # SignatureInvalid, or not a signature at all
            signer = None
        if (
            signer is None
            or signer.key.fingerprint != self.fingerprint
            or task.get("run_id") != study
            or not isinstance(spec_config, dict)
            or not isinstance(encoder_json, str)
            or task.get("spec") != spec_hash(spec_config)
            or task.get("encoder") != sha256_text(encoder_json)
        ):
            raise BadSignedStudy(
                f"the service's copy of study {study} is not the study this researcher signed (its spec or "
                "encoder differs from the signed hashes, or the signature is not this key's). Nothing was "
                "rebuilt from it. Fix: tell the coordinator's operator; the sites refuse such a study too."
            )
        return spec_config, encoder_json

    def events(self, study: str, *, after: int = 0, wait: float = 0.0) -> list[dict[str, Any]]:
        """The study's events after the ``after``-th (waiting up to ``wait`` s for one)."""
        response = self._call(
            "GET", f"/studies/{study}/events", params={"after": after, "wait": wait}, read_timeout=wait + 15.0
        )
        return list(response.json()["events"])

    def follow(
        self,
        study: str,
        *,
        after: int = 0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        reconnect_for: float = RECONNECT_FOR,
    ) -> dict[str, Any]:
        """Every event from ``after`` on, told to ``on_event``, until the study's end (returned).
        A lost connection is tried again for ``reconnect_for`` seconds: the study goes on."""
        lost_since: float | None = None
        while True:
            try:
                events = self.events(study, after=after, wait=EVENT_WAIT)
                lost_since = None
            except ServiceUnreachable:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > reconnect_for:
                    raise
                time.sleep(1.0)
                continue
            for event in events:
                after = int(event["seq"])
                if on_event is not None:
                    on_event(event)
                if event["kind"] == "end":
                    return event

    def result(self, study: str) -> dict[str, Any]:
        """The ended study: status, stopped_reason, receipts, charges, rounds, spec, encoder."""
        return dict(self._call("GET", f"/studies/{study}/result").json())

    def model_weights(self, study: str) -> dict[str, Any]:
        """The trained weights as numpy arrays by parameter name (an .npz read without pickle)."""
        import numpy as np

        response = self._call("GET", f"/studies/{study}/model", read_timeout=120.0)
        with np.load(io.BytesIO(response.content), allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}

    def model(self, study: str):
        """The trained model as a ``torch.nn.Module``, rebuilt from the study's spec."""
        import torch

        from federation.protocol.spec import TrainingSpec
        from federation.training.features import FeatureEncoder
        from federation.training.models import build_model

        result = self.result(study)
        spec = TrainingSpec.from_config(result["spec"])
        encoder = FeatureEncoder.from_json(result["encoder"])
        model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
        weights = self.model_weights(study)
        model.load_state_dict({name: torch.from_numpy(array.copy()) for name, array in weights.items()})
        return model.eval()

    def cancel(self, study: str) -> str:
        """Cancel a study this researcher started; how its Flower run stopped."""
        return str(self._call("DELETE", f"/studies/{study}").json()["said"])

    # --- query batches ----------------------------------------------------------------

    def run_queries(
        self, requests: list[QueryRequest], *, costs: bool = False, timeout: float = 300.0
    ) -> dict[str, Any]:
        """Send a signed batch (every request carries the batch's one signature); the
        sites' answers as JSON (``answers``: per query, each site's reply; ``costs``)."""
        body = {
            "requests": [
                {
                    "query": r.query.canonical(),
                    "project": r.project,
                    "run_id": r.run_id,
                    "authorization": None if r.authorization is None else r.authorization.to_json(),
                }
                for r in requests
            ],
            "costs": costs,
            "timeout": timeout,
        }
        return dict(self._call("POST", "/queries", json=body, read_timeout=timeout + 30.0).json())

    def query_cost(self, requests: list[QueryRequest], *, timeout: float = 300.0) -> pd.DataFrame:
        """What each query would cost at each site, as each site computes it (nothing spent)."""
        return pd.DataFrame(self.run_queries(requests, costs=True, timeout=timeout)["costs"] or [])


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['rule']}; here: {error['value']}. Fix: {error['fix']}."
    except (ValueError, KeyError, TypeError):
        return f"the study service answered {response.status_code} without an explanation."
