"""`stt-router demo` and `stt-router stack init|up`."""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

_stack_options = [
    click.option("--api-port", default=8000, show_default=True, help="API server port (another if taken)"),
    click.option("--flower-port", default=5555, show_default=True, help="Flower port (another if taken)"),
    click.option("--metrics-port", default=9101, show_default=True, help="worker metrics port (another if taken)"),
    click.option("--router-metrics-port", default=9102, show_default=True,
                 help="route-decision metrics port (another if taken)"),
    click.option("--bucket", default="stt-router", show_default=True, help="the bucket on the local S3"),
    click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path),
                 help="where each part's log goes (default .cache/stack/<time>)"),
    click.option("--own-redis", is_flag=True, help="start a private Redis even if one answers at 127.0.0.1:6379"),
]


def stack_options(f):
    for option in reversed(_stack_options):
        f = option(f)
    return f


def _make_stack(*, api_port: int, flower_port: int, metrics_port: int, router_metrics_port: int, bucket: str,
                log_dir: Path | None, own_redis: bool, parts: tuple[str, ...] | None = None):
    from devstack.stack import PARTS, Stack, StackOptions, clean_old_logs, default_log_dir

    if log_dir is None:
        log_dir = default_log_dir()
        clean_old_logs(log_dir.parent)
    options = StackOptions(log_dir=log_dir, bucket=bucket, api_port=api_port, flower_port=flower_port,
                           worker_metrics_port=metrics_port, router_metrics_port=router_metrics_port,
                           own_redis=own_redis, parts=parts or PARTS)
    return Stack(options, say=lambda m: click.echo(m))


def _terminate_as_interrupt() -> None:
    """SIGTERM (e.g. from a process manager) stops the stack like Ctrl-C does."""
    def handler(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _print_urls(stack) -> None:
    user, _, password = stack.env["FLOWER_BASIC_AUTH"].partition(":")
    u = stack.urls
    running = stack.procs
    lines = [
        ("API docs", f"{u['api_docs']}   (API key: {stack.env['API_KEY']})", "api"),
        ("Flower", f"{u['flower']}   (user {user}, password {password})", "flower"),
        ("worker metrics", u["worker_metrics"], "worker"),
        ("server metrics", u["server_metrics"], "api"),
        ("route metrics", u["router_metrics"], "router"),
        ("S3/SQS (moto)", f"{u['moto']}   (bucket {stack.o.bucket}; e.g. aws --endpoint-url {u['moto']} "
                          f"s3 ls s3://{stack.o.bucket}/transcripts/ --recursive)", None),
        ("Redis", u["redis"], None),
        ("logs", str(stack.o.log_dir), None),
    ]
    for name, value, part in lines:
        if part is None or part in running:
            click.echo(f"  {name:<15} {value}")


def _route_metrics_line(stack) -> str:
    """The route decisions as the stack's Prometheus endpoint serves them (scraped, not recomputed)."""
    from devstack.stack import http_get

    url = stack.urls["router_metrics"]
    try:
        body = http_get(url)[1].decode()
    except OSError as e:
        return f"route metrics: {url} did not answer ({e})"
    counts = re.findall(r'^stt_router_decisions_total\{decision="(\w+)"\} ([\d.]+)', body, flags=re.M)
    return f"route metrics ({url}): " + ", ".join(f"{d} {float(n):.0f}" for d, n in counts)


def _hold(stack) -> None:
    click.echo("\nThe stack keeps running. Press Ctrl-C to stop everything it started.")
    while True:
        stack.check_alive()
        time.sleep(1)


@click.command()
@stack_options
@click.option("--exit", "exit_after", is_flag=True, help="stop the stack after the demo (CI, scripts)")
@click.option("--samples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="a session folder: manifest.json and chunks/ (default: the bundled sample session)")
@click.option("--session-id", help="default: demo-<time>")
def demo(exit_after: bool, samples: Path | None, session_id: str | None, **stack_opts: Any) -> None:
    """Run the whole system locally and send the sample session through it, live.

    Starts moto (S3, SQS, EventBridge), Redis, the API server, a worker, beat, Flower and the local
    EventBridge loop; uploads the session chunk by chunk; stops the server half-way so the rest
    queue for the worker; prints the combined transcript and the URLs; then keeps the stack
    running until Ctrl-C (or stops it at once with --exit).
    """
    from devstack.demo import SAMPLES, Demo, summary

    stack = _make_stack(**stack_opts)

    def run() -> int:
        click.echo("Starting the local stack (no AWS, no Docker, no GPU):")
        stack.start()
        result = Demo(stack, session_id or time.strftime("demo-%Y%m%d-%H%M%S"), samples or SAMPLES,
                      say=lambda m: click.echo(m)).run()
        click.echo("\n" + summary(result))
        click.echo(_route_metrics_line(stack))
        click.echo("\nRestarting the API server (the GPU server is back):")
        stack.restart_part("api")
        click.echo("\nURLs:")
        _print_urls(stack)
        if not exit_after:
            _hold(stack)
        return 0 if result.ok else 1

    _run_then_stop(stack, "demo", run)


@click.group()
def stack() -> None:
    """The local stack: every part as a local process, on moto and Redis (no AWS, no Docker)."""


@stack.command("up")
@stack_options
@click.option("--without", multiple=True, type=click.Choice(["api", "worker", "beat", "flower", "router"]),
              help="leave a part out (repeatable)")
def up(without: tuple[str, ...], **stack_opts: Any) -> None:
    """Start the stack and keep it running until Ctrl-C (no demo)."""
    from devstack.stack import PARTS

    s = _make_stack(**stack_opts, parts=tuple(p for p in PARTS if p not in without))

    def run() -> int:
        click.echo("Starting the local stack:")
        s.start()
        click.echo("\nURLs:")
        _print_urls(s)
        click.echo(f"\nUpload audio to s3://{s.o.bucket}/sessions/<id>/chunks/<n>.<ext> on {s.urls['moto']}; "
                   "the router sends it to the server or the queue.")
        _hold(s)
        return 0

    _run_then_stop(s, "stack", run)


def _run_then_stop(stack: Any, what: str, run: Callable[[], int]) -> None:
    """Run `run`, and stop everything the stack started whatever happens: a part that fails to
    start, Ctrl-C or SIGTERM. Exits with `run`'s code, or 1 when the stack failed."""
    from devstack.procs import StackError

    _terminate_as_interrupt()
    code = 0
    try:
        code = run()
    except StackError as e:
        click.echo(f"\n{what} failed: {e}", err=True)
        code = 1
    except KeyboardInterrupt:
        click.echo("\nCtrl-C: stopping the stack")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave parts running
        stack.stop()
    sys.exit(code)


@stack.command("init")
@click.option("--bucket", help="default S3_BUCKET")
def init(bucket: str | None) -> None:
    """Create the bucket, the task queues and the EventBridge rule to the router (idempotent).

    For a local endpoint (AWS_ENDPOINT_URL, e.g. moto's server) or a development account; in
    production the deployment template creates them.
    """
    from devstack.resources import init_resources
    from transcription.settings import get_settings

    for line in init_resources(get_settings(), bucket):
        click.echo(f"init: {line}")
