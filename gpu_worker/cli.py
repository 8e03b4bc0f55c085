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
