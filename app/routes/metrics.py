"""`GET /metrics`: Prometheus text format (public unless `PUBLIC_METRICS=false`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.metrics import CONTENT_TYPE
from app.respond import UNAUTHORIZED, server_of

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus metrics"},
    **UNAUTHORIZED,
})
async def metrics(request: Request) -> Response:
    return Response(server_of(request).metrics.render(), media_type=CONTENT_TYPE)
