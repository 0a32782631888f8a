"""The service's refusals: an HTTP status and a body that says the rule, the value and the fix.

Nothing internal leaves in a body (no trace, no path): an unexpected failure is
answered with an incident id, and its details go to the service's log.
"""

from __future__ import annotations

from typing import Any

from federation.errors import BadInput


class ServiceError(BadInput):
    """A refusal with its HTTP status; ``code`` is a stable word a client can act on
    (``login-required``, ``session-expired``, ``not-found``...). Of the bad-input kind: what
    the client sent breaks a rule of the service (the body of the 500 answer is built with
    it too, but is never raised)."""

    def __init__(self, *, status: int, code: str, rule: str, value: Any, fix: str) -> None:
        super().__init__(f"{rule}: {value}")
        self.status, self.code, self.rule, self.value, self.fix = status, code, rule, str(value), fix

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "rule": self.rule, "value": self.value, "fix": self.fix}}


def not_found(what: str) -> ServiceError:
    """The same answer for a study that does not exist and one of another researcher."""
    return ServiceError(
        status=404,
        code="not-found",
        rule="a researcher sees only the studies and batches they started",
        value=f"no {what} of yours",
        fix="use the study id your start_study returned, logged in with the key that signed it",
    )
