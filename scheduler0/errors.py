"""Errors shared by the daemon, the CLI and the console.

Hierarchy (each maps to one HTTP status, in one place: ``Scheduler0Error.status``)::

    Scheduler0Error                 500  base; never raised for bad input
    ├── BadRequest                  400  malformed JSON, wrong envelope
    ├── Unauthorized                401  missing or wrong credentials
    ├── Forbidden                   403  a client key on an operator/peer route
    ├── NotFound                    404  unknown id
    ├── Conflict                    409  duplicate name, project still has jobs
    ├── PayloadTooLarge             413  body or batch over the limit
    ├── UnsupportedMediaType        415  a body that is not JSON by its content-type
    ├── ValidationFailed            422  one or more invalid fields (``details``)
    ├── NoQuorum                    503  the cluster cannot commit a write now
    │   └── NotCommitted            503  the log could not say a command committed
    └── ConfigError                 (start-up only) a config key is invalid
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One invalid field. ``index`` is the item's position in a batch, if any."""

    field: str
    message: str
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out


class Scheduler0Error(Exception):
    status = 500
    code = "internal_error"
    closes_connection = False
    """The answer ends its connection (the rest of the request is not waited for)."""

    def __init__(
        self, message: str, details: list[FieldError] | None = None, omitted: int = 0
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.omitted = omitted
        """Further field errors not listed in ``details`` (they are capped)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "details": [d.to_dict() for d in self.details],
        }
        if self.omitted:
            out["details_omitted"] = self.omitted
        return out


class BadRequest(Scheduler0Error):
    status = 400
    code = "bad_request"


class Unauthorized(Scheduler0Error):
    status = 401
    code = "unauthorized"


class Forbidden(Scheduler0Error):
    status = 403
    code = "forbidden"


class NotFound(Scheduler0Error):
    status = 404
    code = "not_found"


class Conflict(Scheduler0Error):
    status = 409
    code = "conflict"


class PayloadTooLarge(Scheduler0Error):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(Scheduler0Error):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(Scheduler0Error):
    status = 422
    code = "validation_failed"


class InsufficientStorage(Scheduler0Error):
    status = 507
    code = "insufficient_storage"


class RequestTimeout(Scheduler0Error):
    status = 408
    code = "request_timeout"
    closes_connection = True  # the rest of a stalled body is not waited for


class TooManyRequests(Scheduler0Error):
    status = 429
    code = "too_many_requests"


class NoQuorum(Scheduler0Error):
    status = 503
    code = "no_quorum"


class NotCommitted(NoQuorum):
    """The replicated log did not report the command committed (no quorum or
    leader in time, or it refused it). It may still be applied later."""


class ConfigError(Scheduler0Error):
    """A configuration key is invalid; the message names the key."""

    code = "config_error"


ERRORS_BY_CODE: dict[str, type[Scheduler0Error]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        NoQuorum,
    )
}


def error_from_dict(data: dict[str, Any]) -> Scheduler0Error:
    """Rebuild an error returned by the state machine or a peer."""
    cls = ERRORS_BY_CODE.get(str(data.get("code")), Scheduler0Error)
    details = [
        FieldError(str(d.get("field")), str(d.get("message")), d.get("index"))
        for d in data.get("details", [])
    ]
    return cls(str(data.get("message", "")), details, int(data.get("details_omitted") or 0))
