"""The completion event as a webhook: a POST signed per the Standard Webhooks convention.

    webhook-id         the event's `event_id` (the same on every retry: receivers drop repeats by it)
    webhook-timestamp  seconds since the epoch when this attempt was signed
    webhook-signature  v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

The key is `WEBHOOK_SECRET` without its `whsec_` prefix, base64-decoded. The body is the event's
detail (`transcription.events.SessionEvent`) as JSON. The URL is posted to under the SSRF rules of
`/transcribe-url` (`transcription.urlfetch`): public addresses only unless `WEBHOOK_ALLOWLIST` admits
a range, checked at connect time; redirects are not followed. The retries, the dead letter and the
once-per-id guard are the task's (`tasks/webhook.py`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from transcription.errors import NetworkError, OptionError, UrlFetchError
from transcription.settings import Settings, get_settings
from transcription.urlfetch import post_url

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; `OptionError` when it is not one."""
    if not secret.startswith(PREFIX):
        raise OptionError("WEBHOOK_SECRET must start with whsec_ (then base64)")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except ValueError:
        raise OptionError("WEBHOOK_SECRET is not whsec_ followed by base64") from None
    if len(key) < 16:
        raise OptionError("WEBHOOK_SECRET's key is shorter than 16 bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for this message."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does (and the docs show): the signature matches and the timestamp is recent."""
    timestamp = int(headers["webhook-timestamp"])
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, headers["webhook-id"], timestamp, body).split(",", 1)[1]
    return any(hmac.compare_digest(expected, s.split(",", 1)[1]) for s in headers["webhook-signature"].split()
               if s.startswith("v1,"))


class WebhookFailed(NetworkError):
    """The receiver did not answer 2xx, or could not be reached: worth retrying."""

    kind = "webhook"


def post_event(msg_id: str, body: bytes, *, url: str | None = None, settings: Settings | None = None) -> int:
    """POST one signed event; the 2xx status, `WebhookFailed` (retry) or a `PermanentError`
    (a refused address, a missing or malformed secret: retrying cannot help)."""
    s = settings or get_settings()
    url = url or s.webhook_url
    if not url:
        raise OptionError("no WEBHOOK_URL")
    if s.webhook_secret is None:
        raise OptionError("WEBHOOK_URL is set but WEBHOOK_SECRET is not")
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(s.webhook_secret.get_secret_value(), msg_id, timestamp, body)}
    try:
        status = post_url(url, body, headers, timeout_s=s.webhook_timeout_s, allowlist=s.webhook_allowlist)
    except UrlFetchError as e:  # unreachable, reset, too slow: the receiver may be back later
        raise WebhookFailed(e.reason) from None
    if not 200 <= status < 300:
        raise WebhookFailed(f"the webhook answered HTTP {status}")
    return status
