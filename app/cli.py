"""`stt-router serve`: the transcription server under uvicorn (one process, one engine)."""

from __future__ import annotations

import logging

import click


@click.command()
@click.option("--host", help="interface to listen on (default SERVER_HOST, 127.0.0.1; 0.0.0.0 for all)")
@click.option("--port", type=click.IntRange(0, 65535), help="port (default SERVER_PORT, 8000)")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def serve(host: str | None, port: int | None, log_level: str) -> None:
    """Run the transcription server. The model loads in the background; /health says when it is ready."""
    from app.auth import InsecureConfig
    from transcription.settings import get_settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        from app.main import create_app

        app = create_app(settings)
    except (InsecureConfig, ValueError) as e:
        raise click.ClickException(str(e)) from e

    import uvicorn

    uvicorn.run(app, host=host or settings.server_host, port=settings.server_port if port is None else port,
                log_level=log_level, server_header=False, date_header=True, log_config=None)
