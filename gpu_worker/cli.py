"""`stt-router worker`."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="pool processes (default WORKER_CONCURRENCY)")
@click.option("--queues", "-Q", help="comma-separated queues (default TRANSCRIBE_QUEUE)")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--hostname", "-n", help="worker name (default gpu@<host>)")
def worker(concurrency: int | None, queues: str | None, loglevel: str, hostname: str | None) -> None:
    """Run a GPU worker: consumes `transcribe`, one chunk at a time per process; stops when idle."""
    from gpu_worker.worker import run_worker

    qs = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    sys.exit(run_worker(concurrency=concurrency, queues=qs, loglevel=loglevel, hostname=hostname))


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="0.0.0.0 to serve other hosts")
@click.option("--url-prefix", help="serve under this path (behind a reverse proxy)")
@click.option("--insecure-no-auth", is_flag=True, help="run without FLOWER_BASIC_AUTH (local use only)")
def flower(port: int, address: str, url_prefix: str | None, insecure_no_auth: bool) -> None:
    """Run Flower on the workers' task events (over Redis with the SQS broker), behind basic auth."""
    from gpu_worker.flower import FlowerAuthError, exec_flower, flower_command
    from transcription.settings import get_settings

    s = get_settings()
    try:
        argv, env = flower_command(s, port=port, address=address, url_prefix=url_prefix,
                                   insecure_no_auth=insecure_no_auth)
    except FlowerAuthError as e:
        raise click.ClickException(str(e)) from e
    if insecure_no_auth and not s.flower_basic_auth:
        click.echo("flower: WARNING: no basic auth (--insecure-no-auth); anyone who reaches "
                   f"{address}:{port} sees every task", err=True)
    from kombu.utils.url import maybe_sanitize_url

    click.echo(f"flower: reading task events from {maybe_sanitize_url(argv[3])}; http://{address}:{port}/", err=True)
    exec_flower(argv, env)
