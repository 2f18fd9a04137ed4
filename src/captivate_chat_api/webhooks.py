"""Signed webhook requests between the gateway and an AI agent (PROTOCOL.md section 8, ours).

The gateway POSTs each ChatRequest to the agent's URL with three headers::

    X-Captivate-Delivery:  <uuid>           one id per turn, the same on every retry (deduplicate on it)
    X-Captivate-Timestamp: <unix seconds>   when this attempt was signed
    X-Captivate-Signature: sha256=<hex>     HMAC-SHA256(secret, f"{timestamp}.{body}") when a secret is set

An agent checks a request with :func:`verify_webhook` before trusting it::

    from captivate_chat_api.webhooks import WebhookVerificationError, verify_webhook

    try:
        verify_webhook(SECRET, await request.body(), request.headers)
    except WebhookVerificationError:
        return Response(status_code=401)

Standard library only: an agent needs nothing of the gateway (nor of the client) to verify.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from .errors import WebhookVerificationError

DELIVERY_HEADER = "X-Captivate-Delivery"
TIMESTAMP_HEADER = "X-Captivate-Timestamp"
SIGNATURE_HEADER = "X-Captivate-Signature"
SCHEME = "sha256="
DEFAULT_TOLERANCE = 300


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the webhook secret is empty")
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str | bytes, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The timestamp and signature headers for ``body`` (sent byte for byte as signed).

    Args:
        secret: the channel's webhook secret.
        body: the exact request body.
        timestamp: unix seconds; now when None.
    """
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: SCHEME + _digest(secret, stamp, body)}


def verify_webhook(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check that ``body`` and ``headers`` come from a gateway that knows ``secret``.

    Args:
        secret: the channel's webhook secret.
        body: the raw request body, before any JSON parsing.
        headers: the request headers (any mapping; names are matched case-insensitively).
        tolerance: the replay window in seconds, either side of ``now``.
        now: unix time to check against; the clock when None.

    Raises:
        WebhookVerificationError: a header is missing or malformed, the signature does not match, or the
            timestamp is outside the replay window.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    stamp_text = lowered.get(TIMESTAMP_HEADER.lower())
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if not stamp_text:
        raise WebhookVerificationError(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise WebhookVerificationError(f"missing {SIGNATURE_HEADER} header")
    try:
        stamp = int(stamp_text.strip())
    except ValueError:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is not unix seconds") from None
    signature = signature.strip()
    if not signature.startswith(SCHEME):
        raise WebhookVerificationError(f"{SIGNATURE_HEADER} must start with {SCHEME!r}")
    given = signature[len(SCHEME) :].strip().lower().encode("utf-8", "replace")
    # The timestamp is signed too: trust it only once the signature matches.
    if not hmac.compare_digest(given, _digest(secret, stamp, body).encode()):
        raise WebhookVerificationError("the webhook signature does not match")
    age = (time.time() if now is None else now) - stamp
    if age > tolerance:
        raise WebhookVerificationError(f"the webhook timestamp is {age:.0f} s old (tolerance {tolerance} s)")
    if age < -tolerance:
        raise WebhookVerificationError(
            f"the webhook timestamp is {-age:.0f} s in the future (tolerance {tolerance} s)"
        )


__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookVerificationError",
    "sign_webhook",
    "verify_webhook",
]
