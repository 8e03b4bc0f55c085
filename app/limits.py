"""Request body limits, enforced before the body is read.

A declared `Content-Length` over the limit is refused with 413 at once, without reading a byte of
the body; a body without one (chunked) is counted as it streams in and refused as soon as it
passes the limit. Upload routes get `MAX_UPLOAD_MB` (plus room for the form's other fields),
every other route `MAX_JSON_KB`.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response

FORM_OVERHEAD = 64 << 10  # multipart boundaries and the small text fields next to the file


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                await error_response(scope["path"], 400, "bad_request", "invalid Content-Length")(scope, receive, send)
                return
            if size > limit:
                await self._refuse(scope, receive, send, limit, f"request body of {size} bytes")
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # raised inside the route's body read; FastAPI passes HTTPException through as it is
                    raise HTTPException(413, _reason(limit, f"request body of more than {limit} bytes"))
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int, what: str) -> None:
        server = getattr(scope["app"].state, "server", None) if "app" in scope else None
        if server is not None:
            server.metrics.errors.labels("too_large").inc()
        # Connection: close, since the unread body cannot be skipped on a kept-alive connection
        await error_response(scope["path"], 413, "too_large", _reason(limit, what),
                             headers={"Connection": "close"})(scope, receive, send)


def _reason(limit: int, what: str) -> str:
    return f"{what} is over the limit of {limit} bytes"
