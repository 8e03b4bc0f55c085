"""The server's API key for the router: `API_KEY`, or a Secrets Manager secret read once per container.

The deployment passes `API_KEY_SECRET_ARN` rather than the key itself, so the key never sits in the
function's configuration. It is fetched on first use and kept for the life of the container (a
warm Lambda makes no Secrets Manager call per event); a failed read is not cached, so the next
event tries again. To rotate the key, update the secret and let containers recycle (or redeploy).
"""

from __future__ import annotations

import json
import os
import threading

from botocore.config import Config

from transcription.errors import NetworkError
from transcription.settings import Settings
from transcription.storage import aws_client

_cache: dict[str, str] = {}
_lock = threading.Lock()
JSON_FIELDS = ("api_key", "API_KEY", "apiKey")  # a secret stored as JSON: the key's field


class ApiKeyError(NetworkError):
    """The key could not be read (the chunk is queued instead: the worker needs no key)."""

    kind = "api_key"


def api_key(settings: Settings) -> str | None:
    """`API_KEY` if set, else the secret at `API_KEY_SECRET_ARN` (cached), else None."""
    if settings.api_key is not None and settings.api_key.get_secret_value():
        return settings.api_key.get_secret_value()
    arn = settings.api_key_secret_arn
    if not arn:
        return None
    with _lock:
        if arn not in _cache:
            _cache[arn] = _read_secret(arn, settings)
        return _cache[arn]


def forget() -> None:
    """Drop the cached keys (tests; a rotated key after the server said 401)."""
    with _lock:
        _cache.clear()


def _read_secret(arn: str, settings: Settings) -> str:
    parts = arn.split(":")
    region = parts[3] if len(parts) > 3 and parts[3] else settings.aws_region
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or settings.aws_endpoint_url
    try:
        client = aws_client(
            "secretsmanager", region_name=region, endpoint_url=endpoint,
            config=Config(connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}))
        value = client.get_secret_value(SecretId=arn).get("SecretString")
    except Exception as e:  # botocore errors, no permission, no such secret
        raise ApiKeyError(f"cannot read the API key secret {arn}: {type(e).__name__}: {e}") from e
    if not value or not value.strip():
        raise ApiKeyError(f"the API key secret {arn} has no SecretString")
    value = value.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if isinstance(data, dict):
            found = next((data[f] for f in JSON_FIELDS if isinstance(data.get(f), str) and data[f]), None)
            if found is None:
                fields = ", ".join(JSON_FIELDS)
                raise ApiKeyError(f"the API key secret {arn} is JSON without one of the fields {fields}")
            return found
    return value
