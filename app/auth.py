"""The API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in constant time.

It is checked in an ASGI middleware, before a request body is read (an anonymous client cannot make
the server read or spool an upload); the FastAPI dependency below repeats the check and is what puts
the security schemes into the OpenAPI schema. Without `API_KEY` the server refuses to start unless
`ALLOW_INSECURE_NO_API_KEY` is set.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_response
from transcription.settings import Settings

log = logging.getLogger(__name__)

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="stt-router"'}


class InsecureConfig(RuntimeError):
    """The server would start without an API key and nobody said that is fine."""


def configured_key(settings: Settings) -> bytes | None:
    """The key as bytes, or None when auth is off; refuses a missing key unless explicitly allowed."""
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    if key:
        if len(key) < 16:
            log.warning("API_KEY is shorter than 16 characters; use a long random key")
        return key.encode()
    if settings.allow_insecure_no_api_key:
        log.warning("API key check is OFF (ALLOW_INSECURE_NO_API_KEY=true): anyone who reaches this port "
                    "can use the server; only for local use")
        return None
    raise InsecureConfig(
        "API_KEY is not set: refusing to start the server without an API key. Set API_KEY to a long random "
        "value, or set ALLOW_INSECURE_NO_API_KEY=true for local use only."
    )


def public_paths(settings: Settings) -> frozenset[str]:
    return DOCS_PATHS | {"/health"} | ({"/metrics"} if settings.public_metrics else set())


def presented_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def key_matches(expected: bytes | None, presented: str | None) -> bool:
    if expected is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected)


class AuthMiddleware:
    """401 for every path but the public ones unless the key matches; runs before the body is read."""

    def __init__(self, app: ASGIApp, key: bytes | None, public: frozenset[str]) -> None:
        self.app = app
        self.key = key
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.key is None or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if key_matches(self.key, presented_key(headers)):
            await self.app(scope, receive, send)
            return
        reason = "missing API key" if presented_key(headers) is None else "invalid API key"
        app = scope.get("app")
        server = getattr(app.state, "server", None) if app is not None else None
        if server is not None:
            server.metrics.errors.labels("unauthorized").inc()
        response = error_response(scope["path"], 401, "unauthorized",
                                  f"{reason}: send 'Authorization: Bearer <API_KEY>' or 'X-API-Key: <API_KEY>'",
                                  headers=CHALLENGE)
        await response(scope, receive, send)


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API_KEY>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API_KEY>")


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> None:
    """Route dependency: the same check as the middleware (defence in depth, and the OpenAPI schemes)."""
    expected = request.app.state.server.api_key
    presented = bearer.credentials if bearer is not None else api_key
    if not key_matches(expected, presented):
        raise HTTPException(401, "missing or invalid API key", headers=CHALLENGE)
