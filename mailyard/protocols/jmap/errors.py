"""JMAP's two levels of failure (RFC 8620 §3.6).

A request-level problem means no method ran: the whole HTTP request is answered with an RFC 7807
problem document. A method-level error fails one method call only; the dispatcher turns the
`MethodError` a method raises into an `["error", {...}, callId]` response and goes on with the
next call, so methods report failures by raising instead of building responses by hand.
"""

from __future__ import annotations

from typing import Any, Literal

ERROR_URN = "urn:ietf:params:jmap:error:"

RequestErrorType = Literal["unknownCapability", "notJSON", "notRequest", "limit"]

MethodErrorType = Literal[
    # RFC 8620 §3.6.2: any method may answer these.
    "serverUnavailable", "serverFail", "serverPartialFail", "unknownMethod", "invalidArguments",
    "invalidResultReference", "forbidden", "accountNotFound", "accountNotSupportedByMethod",
    "accountReadOnly",
    # RFC 8620 §5: the standard methods' own errors.
    "requestTooLarge", "stateMismatch", "cannotCalculateChanges", "anchorNotFound",
    "unsupportedSort", "unsupportedFilter", "tooManyChanges", "fromAccountNotFound",
]

PROBLEM_JSON = "application/problem+json"


def problem(type_: str, status: int, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 7807 problem document; HTTP-level refusals (401, 403) use type "about:blank"."""
    return {"type": type_, "status": status, "detail": detail, **extra}


class RequestError(Exception):
    """Refuses the whole request (§3.6.1) before any method runs."""

    def __init__(self, type_: RequestErrorType, detail: str, *, limit: str | None = None) -> None:
        super().__init__(detail)
        self.type = type_
        self.detail = detail
        self.limit = limit
        self.status = 400

    def problem(self) -> dict[str, Any]:
        extra = {"limit": self.limit} if self.limit is not None else {}
        return problem(ERROR_URN + self.type, self.status, self.detail, **extra)


class MethodError(Exception):
    """Fails one method call (§3.6.2); `extra` carries type-specific properties."""

    def __init__(self, type: MethodErrorType, description: str | None = None,
                 **extra: Any) -> None:
        super().__init__(description or type)
        self.type = type
        self.description = description
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type}
        if self.description is not None:
            body["description"] = self.description
        body.update(self.extra)
        return body
