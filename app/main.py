"""The FastAPI app: `create_app(settings)` wires routes, auth, limits, metrics and error handling.

Nothing heavy happens at import or in `create_app`: the engine starts loading in a background thread
when the server starts serving (the lifespan), and `/health` says `loading` until it is ready.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app import errors
from app.auth import AuthMiddleware, configured_key, public_paths, require_api_key
from app.fetch import parse_allowlist
from app.limits import FORM_OVERHEAD, BodyLimitMiddleware
from app.metrics import MetricsMiddleware
from app.routes import health, metrics, openai, s3, sessions, transcribe
from app.schemas import DiarizedTranscription, TranscriptionText, VerboseTranscription
from app.state import EngineLoader, Server
from transcription.engines import Engine, get_engine
from transcription.settings import Settings, get_settings
from transcription.transcript import ChunkTranscript

UPLOAD_PATHS = frozenset({"/transcribe", "/v1/audio/transcriptions"})
DESCRIPTION = """Transcribes audio chunks: uploads, S3 objects (the router's call), URLs, and OpenAI's
transcription API; and sessions (state, progress, the combined transcript). Every route but
`/health`, `/metrics` and the docs needs the API key: `Authorization: Bearer <API_KEY>` or `X-API-Key: <API_KEY>`."""


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               engine_loader: EngineLoader = get_engine) -> FastAPI:
    """A server app. `engine` skips loading (tests, benchmarks); otherwise `engine_loader` runs at start-up.

    Raises `InsecureConfig` without `API_KEY` (unless `ALLOW_INSECURE_NO_API_KEY`), and `ValueError`
    for an invalid `URL_FETCH_ALLOWLIST` or `SERVER_CAPACITY`: a misconfigured server does not start.
    """
    settings = settings or get_settings()
    key = configured_key(settings)
    parse_allowlist(settings.url_fetch_allowlist)
    server = Server(settings, key, engine, engine_loader)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        server.engines.start_loading()
        yield
        server.close()

    app = FastAPI(title="Smart Transcription Router server", version="1.0.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.server = server
    authed = [Depends(require_api_key)]
    app.include_router(health.router)
    app.include_router(metrics.router, dependencies=[] if settings.public_metrics else authed)
    for module in (transcribe, s3, openai, sessions):
        app.include_router(module.router, dependencies=authed)
    errors.install(app)

    upload_limit = (settings.max_upload_mb << 20) + FORM_OVERHEAD
    json_limit = settings.max_json_kb << 10
    # add_middleware puts each one outside the previous: metrics sees everything, auth runs before
    # the body limit, and both run before any body is read.
    app.add_middleware(BodyLimitMiddleware, limit_for=lambda path: upload_limit if path in UPLOAD_PATHS else json_limit)
    app.add_middleware(AuthMiddleware, key=key, public=public_paths(settings))
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus the models the routes reference by hand (alternative 200 bodies)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    extra: tuple[type[BaseModel], ...] = (ChunkTranscript, VerboseTranscription, TranscriptionText,
                                          DiarizedTranscription)
    for model in extra:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components.setdefault(model.__name__, model_schema)
    app.openapi_schema = schema
    return schema
