"""Standard Webhooks signatures: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from rased.adapters.postgres.webhooks import SECRET_PREFIX


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a `whsec_...` secret (the base64 after the prefix)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` value: one `v1,` signature per secret, space-separated.

    During a secret rotation both the new and the previous secret sign, so a receiver that
    knows either one accepts the delivery.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def headers(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the headers of one attempt."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, message_id, timestamp, body),
    }
