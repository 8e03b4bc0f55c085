"""`GET /health` (public): 200 when the server takes a chunk now, else 503 `loading`/`busy`/`failed`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.respond import RETRY_AFTER, server_of
from app.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={
    503: {"model": Health, "description": "loading, busy or failed: queue the work instead", "headers": RETRY_AFTER},
})
async def health(request: Request) -> JSONResponse:
    """The router's probe. Answers from memory, never waits for the engine."""
    server = server_of(request)
    h = server.health()
    if h.status == "ready":
        return JSONResponse(h.model_dump())
    retry = server.slots.retry_after() if h.status == "busy" else 5
    return JSONResponse(h.model_dump(), status_code=503, headers={"Retry-After": str(retry)})
