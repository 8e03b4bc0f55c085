"""The error tree mapped to HTTP: bad input is a 4xx with the reason, never a 500.

    a known speaker's name or clip (SpeakerReferenceError), a bad chunking_strategy (RequestParameterError) 400
    UnsupportedMediaError 415
    AudioError, InvalidKeyError, OptionError, URL refused 422 · too large 413
    AccessRefused 403 · NotFoundError 404
    engine loading, busy, engine failed to load, RetryableError 503 (the router retries 5xx)
    ModelError during a request 500 (a configuration problem, not the caller's)

Every error body is `ErrorResponse`: `{"detail": reason, "kind": label}`; on `/v1` routes it also
carries OpenAI's `{"error": {"message", "type"}}` so the `openai` client shows the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from transcription.errors import (
    AccessRefused,
    AudioError,
    InvalidKeyError,
    ModelError,
    NetworkError,
    NotFoundError,
    OptionError,
    PermanentError,
    RequestParameterError,
    RetryableError,
    SpeakerReferenceError,
    TooLarge,
    TranscriptionError,
    UnsupportedMediaError,
    UrlFetchError,
    UrlRefused,
)

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The server cannot take the work now (503 + Retry-After): loading, busy, or no engine."""

    def __init__(self, kind: str, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after


_STATUS_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media", 422: "invalid"}


def status_for(exc: TranscriptionError) -> int:
    if isinstance(exc, SpeakerReferenceError | RequestParameterError):  # OpenAI answers these with a 400
        return 400
    if isinstance(exc, UnsupportedMediaError):
        return 415
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, AccessRefused):
        return 403
    if isinstance(exc, AudioError | InvalidKeyError | OptionError | UrlRefused | UrlFetchError):
        return 422
    if isinstance(exc, ModelError):
        return 500
    if isinstance(exc, NetworkError):
        return 502
    if isinstance(exc, RetryableError):
        return 503
    if isinstance(exc, PermanentError):
        return 422
    return 500


def error_response(path: str, status: int, kind: str, reason: str, *, headers: dict[str, str] | None = None,
                   errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": reason, "kind": kind}
    if errors is not None:
        body["errors"] = errors
    if path.startswith("/v1/"):
        body["error"] = {"message": reason, "type": kind, "param": None, "code": str(status)}
    return JSONResponse(body, status_code=status, headers=headers)


def _count(request: Request, kind: str) -> None:
    server = getattr(request.app.state, "server", None)
    if server is not None:
        server.metrics.errors.labels(kind).inc()


def _answer(request: Request, status: int, kind: str, reason: str, **kw: Any) -> JSONResponse:
    _count(request, kind)
    return error_response(request.url.path, status, kind, reason, **kw)


async def _transcription_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TranscriptionError)
    status = status_for(exc)
    headers = {"Retry-After": "5"} if status == 503 else None
    if status >= 500:
        log.warning("request failed: %s %s: %s", type(exc).__name__, request.url.path, exc.reason)
    return _answer(request, status, exc.kind, exc.reason, headers=headers)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unavailable)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return _answer(request, 503, exc.kind, exc.reason, headers=headers)


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error without the input it echoes (may be large or not JSON) or its context."""
    return {"loc": [str(x) for x in error.get("loc", ())], "msg": str(error.get("msg", "")),
            "type": str(error.get("type", ""))}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean(e) for e in exc.errors()]
    summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3]) or "invalid request"
    return _answer(request, 422, "invalid", summary, errors=errors[:20])


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _STATUS_KINDS.get(exc.status_code, "error")
    return _answer(request, exc.status_code, kind, str(exc.detail), headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ValidationError):  # its message quotes the input, which may be any S3 object
        errors = [_clean(dict(e)) for e in exc.errors()[:5]]
        log.error("unexpected error on %s: %s %s", request.url.path, exc.title, errors)
    else:
        log.exception("unexpected error on %s", request.url.path)
    return _answer(request, 500, "internal", "internal error (see the server log)")


def install(app: FastAPI) -> None:
    app.add_exception_handler(TranscriptionError, _transcription_error)
    app.add_exception_handler(Unavailable, _unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
