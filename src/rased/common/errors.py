"""Domain errors; the error interceptor maps each to one gRPC status."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


class RasedError(Exception):
    """Base of every error a service raises on purpose; the message is safe to show callers."""


@dataclass(frozen=True)
class FieldViolation:
    """One broken input rule: where (a field path such as `events[2].pointer.x`) and why."""

    field: str
    description: str
    rule: str = ""


class ValidationFailed(RasedError):
    """The input breaks one or more rules (INVALID_ARGUMENT with BadRequest details)."""

    def __init__(self, violations: list[FieldViolation], message: str = "") -> None:
        self.violations = violations
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations[:5])
        super().__init__(message or f"invalid request: {summary}")


class DecryptionFailed(ValidationFailed):
    """An encrypted payload could not be opened: wrong key, tampered or malformed."""

    def __init__(self, reason: str, field: str = "encrypted_batch") -> None:
        super().__init__(
            [FieldViolation(field=field, description=reason, rule="jwe")],
            message=f"could not decrypt {field}: {reason}",
        )


class PayloadTooLarge(RasedError):
    """The input exceeds a size limit (RESOURCE_EXHAUSTED, HTTP 413 at the edge)."""

    def __init__(self, message: str, limit_bytes: int, actual_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.actual_bytes = actual_bytes
        super().__init__(message)


class Unauthenticated(RasedError):
    """No valid credential came with the call (UNAUTHENTICATED)."""


class PermissionDenied(RasedError):
    """The credential is valid but may not do this (PERMISSION_DENIED)."""


class NotFound(RasedError):
    """The object does not exist, or belongs to another tenant (NOT_FOUND, never telling which)."""


class AlreadyExists(RasedError):
    """The object to create exists already (ALREADY_EXISTS)."""


class FailedPrecondition(RasedError):
    """The system is not in a state where this call can succeed (FAILED_PRECONDITION)."""


@dataclass
class QuotaExceeded(RasedError):
    """A rate limit or quota is exhausted (RESOURCE_EXHAUSTED with RetryInfo)."""

    message: str
    retry_after: timedelta = field(default_factory=lambda: timedelta(seconds=1))

    def __post_init__(self) -> None:
        super().__init__(self.message)


class DependencyUnavailable(RasedError):
    """A backing store or service is down; the caller may retry (UNAVAILABLE)."""
