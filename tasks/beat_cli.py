"""`stt-router beat` and `stt-router drain`."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=2, show_default=True,
              help="processes running beat's tasks (a long drain never delays the scaler with 2)")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--hostname", "-n", help="worker name (default beat@<host>)")
@click.option("--show", is_flag=True, help="print the schedule and the next drains, then exit")
def beat(concurrency: int, loglevel: str, hostname: str | None, show: bool) -> None:
    """Run Celery beat: the midnight drain, the session sweeper and the GPU scaler.

    One always-on process without a GPU: beat (RedBeat; a Redis lock lets exactly one beat send,
    so a second `stt-router beat` elsewhere is a standby) plus a small worker that runs beat's
    tasks from CONTROL_QUEUE.
    """
    from beat_schedule import check, describe
    from tasks.beat import BeatSettingsError, run_beat
    from transcription.settings import get_settings

    s = get_settings()
    problems = check(s)
    if show:
        for line in describe(s) if not problems else []:
            click.echo(line)
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        sys.exit(1 if problems else 0)
    for line in describe(s) if not problems else []:
        click.echo(f"schedule: {line}", err=True)
    try:
        code = run_beat(concurrency=concurrency, loglevel=loglevel, hostname=hostname)
    except BeatSettingsError as e:
        raise click.ClickException(str(e)) from None
    sys.exit(code)


@click.command()
@click.option("--now", is_flag=True, help="run the drain in this process (it publishes the chords itself)")
@click.option("--dry-run", is_flag=True, help="only show the backlog and the capacity it would ask for")
@click.option("--bucket", help="default S3_BUCKET")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def drain(now: bool, dry_run: bool, bucket: str | None, as_json: bool) -> None:
    """Run the midnight drain once, by hand.

    Without --now the drain task goes to CONTROL_QUEUE, where `stt-router beat` runs it (as at
    midnight; the summary is in beat's log). With --now (or --dry-run) it runs here: find the chunks
    without a transcript or failed record, ask for GPU capacity, send one chord per session.
    """
    from transcription.settings import get_settings

    s = get_settings()
    b = bucket or s.s3_bucket
    if not (now or dry_run):
        from tasks.celery_app import DRAIN_TASK, make_app

        result = make_app(s).send_task(DRAIN_TASK, kwargs={"bucket": b}, queue=s.control_queue)
        click.echo(f"queued drain {result.id} on {s.control_queue} (run by `stt-router beat`)")
        return
    from tasks.drain import run_drain
    from transcription.errors import TranscriptionError

    try:
        summary = run_drain(b, dry_run=dry_run)
    except TranscriptionError as e:
        raise click.ClickException(e.reason) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    sys.exit(0 if summary["status"] in ("drained", "dry_run") and "error" not in summary.get("capacity", {}) else 1)


def _print_summary(summary: dict) -> None:
    if summary["status"] == "already_running":
        click.echo(f"another drain of s3://{summary['bucket']} is running; nothing sent")
        return
    verb = "would queue" if summary["status"] == "dry_run" else "queued"
    click.echo(f"{verb} {summary['chunks']} chunk(s) of {summary['sessions']} session(s) from "
               f"s3://{summary['bucket']} in {summary['took_s']:.1f} s")
    for sid, n in sorted(summary["backlog"].items()):
        chord_id = summary["chords"].get(sid)
        click.echo(f"  {sid}: {n} chunk(s)" + (f", chord {chord_id}" if chord_id else ""))
    cap = summary["capacity"]
    details = ", ".join(f"{k}={v}" for k, v in cap.items() if k not in ("mode", "wanted"))
    click.echo(f"capacity: {cap['mode']}, {cap['wanted']} worker(s) wanted" + (f" ({details})" if details else ""))
