"""Enforces the contracts' buf.validate rules on every request message (protovalidate)."""

from __future__ import annotations

from typing import Any

import protovalidate

from rased.common.errors import FieldViolation, ValidationFailed
from rased.common.interceptors.base import CallInterceptor, Context


def field_path(violation: protovalidate.Violation) -> str:
    """Render a violation's field path the way callers write it, e.g. `events[2].pointer.x`."""
    parts: list[str] = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        text = element.field_name
        subscript = element.subscript
        if subscript is not None:
            # Map keys are quoted; list positions are not.
            value = subscript.value
            text += f"[{value}]" if subscript.field == "index" else f"[{value!r}]"
        parts.append(text)
    return ".".join(parts)


def violations_of(validator: protovalidate.Validator, message: Any) -> list[FieldViolation]:
    """Return the rules a message breaks, as field violations (empty when it is valid)."""
    found = validator.collect_violations(message)
    return [
        FieldViolation(
            field=field_path(v) or v.proto.rule_id,
            description=v.proto.message,
            rule=v.proto.rule_id,
        )
        for v in found
    ]


class ValidationInterceptor(CallInterceptor):
    """Rejects a request that breaks its message's rules with ValidationFailed.

    Methods in `self_validated` are skipped: their servicer validates after authenticating,
    so that what an authenticated caller sends wrong can be recorded (ingestion).
    """

    def __init__(
        self,
        validator: protovalidate.Validator | None = None,
        self_validated: frozenset[str] = frozenset(),
    ) -> None:
        self.validator = validator or protovalidate.Validator()
        self.self_validated = self_validated

    async def on_request(self, method: str, request: Any, context: Context) -> None:
        """Validate one request message."""
        if method in self.self_validated:
            return
        violations = violations_of(self.validator, request)
        if violations:
            raise ValidationFailed(violations)
