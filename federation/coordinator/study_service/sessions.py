"""Login by a signed challenge, and the short-lived bearer tokens it gives.

The client asks for a nonce (``challenge``), signs the canonical JSON
``{"kind": "login", "nonce": NONCE, "service": "study-service"}`` with its SSH key in
the namespace ``hospital-dp-workbench/login@v1`` (its own: a login signature can never
pass for a request, nor a request for a login), and sends the signature back
(``login``). The key is read from the signature itself, so any researcher key works
(an ``sk-`` key must show its touch); what that key may do is decided by the request
signatures the sites check. A nonce is used once and lives ``nonce_ttl`` seconds; a
token lives ``token_ttl`` seconds and is bound to the key's fingerprint.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from federation.errors import PolicyRefused
from privacy_budgets.signatures import LOGIN_NAMESPACE, SignatureInvalid, canonical_bytes, verify

SERVICE = "study-service"
MAX_PENDING_NONCES = 1000  # the oldest challenge goes first when more are asked for


def login_message(nonce: str) -> bytes:
    """The exact bytes a researcher signs to log in with ``nonce``."""
    return canonical_bytes({"kind": "login", "nonce": nonce, "service": SERVICE})


class LoginRefused(PolicyRefused):
    """A login that does not prove the key: an unknown or used nonce, a bad signature."""

    def __init__(self, *, rule: str, value: str, fix: str) -> None:
        super().__init__(rule)
        self.rule, self.value, self.fix = rule, value, fix


@dataclass(frozen=True)
class Session:
    token: str
    fingerprint: str
    key: str  # the OpenSSH public key line, without comment
    expires: float  # time.monotonic()


class Sessions:
    """Pending nonces and live tokens, in memory (a restarted service asks for a new login)."""

    def __init__(self, *, token_ttl: float = 900.0, nonce_ttl: float = 120.0) -> None:
        self.token_ttl = float(token_ttl)
        self.nonce_ttl = float(nonce_ttl)
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._tokens: dict[str, Session] = {}
        self._lock = threading.Lock()

    def challenge(self) -> tuple[str, float]:
        nonce = secrets.token_urlsafe(24)
        with self._lock:
            self._nonces[nonce] = time.monotonic() + self.nonce_ttl
            while len(self._nonces) > MAX_PENDING_NONCES:
                self._nonces.popitem(last=False)
        return nonce, self.nonce_ttl

    def login(self, *, nonce: str, signature: str) -> Session:
        with self._lock:
            expires = self._nonces.pop(str(nonce), None)  # used once, whatever follows
        if expires is None or expires < time.monotonic():
            raise LoginRefused(
                rule="a login signs a nonce this service gave out in the last minutes, once",
                value="the nonce is unknown, used or expired",
                fix="ask for a new challenge (POST /login/challenge) and sign it at once",
            )
        try:
            verified = verify(login_message(nonce), signature, namespace=LOGIN_NAMESPACE)
        except (SignatureInvalid, ValueError) as err:
            raise LoginRefused(
                rule=f"a login is an SSH signature over the challenge in the namespace {LOGIN_NAMESPACE}",
                value=" ".join(str(err).split())[:300],
                fix="sign the challenge with your researcher key (workbench.service_client does it)",
            ) from None
        if verified.touched is False:
            raise LoginRefused(
                rule="a hardware key's login signature must show the key was touched",
                value="the user-presence flag is not set",
                fix="sign again and touch the key when it blinks",
            )
        session = Session(
            token=secrets.token_urlsafe(32),
            fingerprint=verified.key.fingerprint,
            key=verified.key.openssh(comment=False),
            expires=time.monotonic() + self.token_ttl,
        )
        with self._lock:
            now = time.monotonic()
            for token in [t for t, s in self._tokens.items() if s.expires < now]:
                del self._tokens[token]
            self._tokens[session.token] = session
        return session

    def session(self, token: str) -> Session | None | bool:
        """The live session of ``token``; False when it expired; None when unknown."""
        with self._lock:
            session = self._tokens.get(token)
        if session is None:
            return None
        if session.expires < time.monotonic():
            return False
        return session
