"""`stt-router router-local` (the local EventBridge loop) and `stt-router build-lambda` (the zip)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click


@click.command("router-local")
@click.option("--bucket", help="the bucket whose sessions/ uploads are routed (default: S3_BUCKET)")
@click.option("--queue", default="stt-router-events", show_default=True, help="SQS queue the rule delivers to")
@click.option("--rule", default="stt-router-sessions", show_default=True, help="EventBridge rule name")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64),
              help="invocations at once (Lambda's concurrency)")
@click.option("--timeout", "timeout_s", default=150, show_default=True, type=click.IntRange(5, 900),
              help="seconds per invocation (the function's timeout)")
@click.option("--wait", "wait_s", default=5, show_default=True, type=click.IntRange(0, 20),
              help="SQS long-poll seconds")
@click.option("--setup-only", is_flag=True, help="create the notification, rule and queue, then exit")
@click.option("--until-idle", is_flag=True, help="exit once the queue is empty and nothing runs")
def router_local(bucket: str | None, queue: str, rule: str, concurrency: int, timeout_s: int, wait_s: int,
                 setup_only: bool, until_idle: bool) -> None:
    """Run the router on S3's own events: S3 -> EventBridge -> SQS -> handler, e.g. on moto's server.

    Each event is passed to router_lambda.handler.handler unchanged; its decisions are printed as
    JSON lines (the Lambda's log lines, with their embedded metrics).
    """
    from router_lambda.local import Loop, setup
    from transcription.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    bucket = bucket or settings.s3_bucket
    url = setup(bucket, settings, queue=queue, rule=rule, visibility_timeout_s=timeout_s + 30)
    click.echo(f"router-local: s3://{bucket}/sessions/ -> EventBridge rule {rule} -> {url}", err=True)
    if setup_only:
        return
    loop = Loop(url, settings, concurrency=concurrency, wait_s=wait_s, timeout_s=timeout_s)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.stop.set())
    click.echo(f"router-local: ready (concurrency {concurrency}, timeout {timeout_s} s)", err=True)
    loop.run(until_idle=until_idle)
    click.echo(f"router-local: stopped after {loop.invocations} invocations ({loop.failures} failed)", err=True)


@click.command("build-lambda")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("build/router-lambda.zip"),
              show_default=True)
@click.option("--python-version", default="3.11", show_default=True, help="the function's runtime (python3.11)")
@click.option("--arch", type=click.Choice(["x86_64", "arm64"]), default="x86_64", show_default=True)
def build_lambda(output: Path, python_version: str, arch: str) -> None:
    """Build the router's deployment zip: its dependencies (the core plus the `router` extra) for
    the Lambda platform, and the three packages it runs (router_lambda, tasks, transcription)."""
    from router_lambda.build import BuildError, build

    try:
        report = build(output, python_version=python_version, arch=arch,
                       progress=lambda m: click.echo(m, err=True))
    except BuildError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{report.path} ({report.size_bytes / 1e6:.1f} MB zipped, {report.unpacked_bytes / 1e6:.1f} MB "
               f"unpacked, {report.files} files)")
    click.echo("packages: " + ", ".join(report.distributions))
    click.echo(f"bytecode: Python {python_version}" if report.bytecode else "bytecode: none (sources only)")
