"""`stt-router dlq|sessions|beat|drain`: what an operator needs to run, see and fix.

Like every command module, it imports only click and the stdlib-only core at the top: `stt-router
--help` imports them all and stays fast (0.2 s; the settings alone take 0.3 s to import, the task
system a second or more). Each command imports what it runs.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from transcription import layout
from transcription.errors import TranscriptionError

if TYPE_CHECKING:
    from transcription.settings import Settings


def _settings() -> Settings:
    from transcription.settings import get_settings

    return get_settings()


def _bucket(bucket: str | None) -> str:
    return bucket or _settings().s3_bucket


@click.group()
def dlq() -> None:
    """The dead-letter queue (DEAD_LETTER_QUEUE): chunks that failed, with the reason."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def dlq_list(as_json: bool) -> None:
    """Show every dead letter and why it is there (nothing is removed)."""
    from tasks.dlq import DeadLetterQueue

    letters = DeadLetterQueue().letters()
    if as_json:
        for letter in letters:
            click.echo(json.dumps(letter.as_dict()))
        return
    if not letters:
        click.echo("the dead-letter queue is empty")
        return
    for letter in letters:
        attempts = f" attempts={letter.attempts}" if letter.attempts else ""
        at = f" at={letter.at}" if letter.at else ""
        click.echo(f"{letter.id}  {letter.task or '?'}  {letter.key or '-'}\n"
                   f"    {letter.kind}: {letter.error}: {letter.reason}{attempts}{at}")
    click.echo(f"{len(letters)} dead letter(s)")


@dlq.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="replay every dead letter")
def dlq_replay(ids: tuple[str, ...], all_: bool) -> None:
    """Send dead letters back to the transcribe queue (IDs: task ids, id prefixes or chunk keys).

    Fix the cause first (e.g. upload a good copy of the chunk): a replayed chunk is transcribed
    even though it has a failed record.
    """
    from tasks.dlq import DeadLetterQueue

    if not ids and not all_:
        raise click.UsageError("give dead-letter IDs or --all")
    done, problems = DeadLetterQueue().replay(ids, all_=all_)
    for letter in done:
        click.echo(f"replayed {letter.id} ({letter.key})")
    for p in problems:
        click.echo(f"not replayed: {p}", err=True)
    click.echo(f"{len(done)} replayed")
    sys.exit(1 if problems else 0)


@dlq.command("drop")
@click.argument("ids", nargs=-1, required=True)
def dlq_drop(ids: tuple[str, ...]) -> None:
    """Delete dead letters for good (their failed records stay in S3)."""
    from tasks.dlq import DeadLetterQueue

    done, problems = DeadLetterQueue().drop(ids)
    for letter in done:
        click.echo(f"dropped {letter.id} ({letter.key})")
    for p in problems:
        click.echo(f"not dropped: {p}", err=True)
    sys.exit(1 if problems else 0)


@click.group()
def sessions() -> None:
    """Sessions in S3: their state, and combining them."""


@sessions.command("status")
@click.argument("session_id")
@click.option("--bucket", help="default S3_BUCKET")
@click.option("--json", "as_json", is_flag=True, help="the report of GET /sessions/{id}?chunks=true")
def sessions_status(session_id: str, bucket: str | None, as_json: bool) -> None:
    """Chunks transcribed, queued and failed, and whether the session transcript exists.

    The same report as the server's `GET /sessions/{id}` (transcription.session_report)."""
    from transcription.errors import NotFoundError
    from transcription.session_report import session_report

    b = _bucket(bucket)
    try:
        st = session_report(b, session_id, combining=_combining(b, session_id), chunks=as_json)
    except NotFoundError:
        raise click.ClickException(f"no session {session_id!r} in s3://{b}/sessions/") from None
    except TranscriptionError as e:
        raise click.ClickException(e.reason) from e
    if as_json:
        click.echo(st.model_dump_json(indent=2))
        return
    expected = st.total_chunks if st.total_chunks is not None else "unknown (no total_chunks in a manifest yet)"
    click.echo(f"session {session_id}: {st.state}")
    if st.manifest_invalid:
        click.echo(f"  manifest invalid:  {st.manifest_invalid} (upload a corrected manifest.json)")
    for problem in st.manifest_problems:
        click.echo(f"  manifest:          {problem}")
    for problem in st.speaker_problems:
        click.echo(f"  known speaker:     {problem}")
    click.echo(f"  chunks expected:   {expected}")
    if st.progress is not None:
        click.echo(f"  progress:          {st.progress:.0%}")
    click.echo(f"  uploaded:          {st.counts.uploaded}")
    click.echo(f"  transcribed:       {st.counts.transcribed}")
    click.echo(f"  queued/in flight:  {st.counts.queued} {_indices(st.queued)}")
    click.echo(f"  failed:            {st.counts.failed} {_indices([f.index for f in st.failed])}")
    for f in st.failed:
        click.echo(f"    chunk {f.index}: {f.error}: {f.reason}")
    if st.waiting:
        click.echo(f"  waiting for stream header: {len(st.waiting)} {_indices(sorted(st.waiting))}")
    for i, reason in sorted(st.waiting.items()):
        click.echo(f"    chunk {i}: {reason}")
    if st.missing:
        click.echo(f"  missing:           {st.counts.missing} {_indices(st.missing)}")
    where = f"s3://{b}/{layout.session_transcript_key(session_id, 'json')}"
    partial = " (partial: failed or missing chunks marked)" if st.partial else ""
    click.echo(f"  session transcript: {'yes, ' + where + partial if st.transcript_keys else 'not yet'}")


def _combining(bucket: str, session_id: str) -> bool:
    """A combine of the session holds its lease now (False when Redis cannot say)."""
    from tasks import locks

    try:
        return locks.is_held(locks.combine_name(bucket, session_id), _settings())
    except Exception:
        return False


def _indices(values: list[int]) -> str:
    if not values:
        return ""
    shown = ", ".join(map(str, values[:20]))
    return f"[{shown}{', ...' if len(values) > 20 else ''}]"


@sessions.command("list")
@click.option("--bucket", help="default S3_BUCKET")
@click.option("--state", type=click.Choice(["open", "in progress", "manifest invalid", "complete", "combining",
                                            "combined", "partial"]), help="only sessions in this state")
def sessions_list(bucket: str | None, state: str | None) -> None:
    """Every session and its state (the pages of the server's `GET /sessions`)."""
    from transcription.session_report import session_page

    b = _bucket(bucket)
    cursor: str | None = None
    shown = 0
    while True:
        page = session_page(b, state=state, limit=200, cursor=cursor, combining=lambda sid: _combining(b, sid))
        for st in page.sessions:
            c = st.counts
            click.echo(f"{st.session_id}  {st.state}  transcribed={c.transcribed} failed={c.failed} "
                       f"pending={c.queued} expected={st.total_chunks if st.total_chunks is not None else '?'}")
        shown += len(page.sessions)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    click.echo(f"{shown} session(s)")


@sessions.command("combine")
@click.argument("session_id")
@click.option("--bucket", help="default S3_BUCKET")
@click.option("--force", is_flag=True, help="combine even without total_chunks, or rewrite an existing transcript")
@click.option("--enqueue", is_flag=True, help="queue combine_session for a worker instead of running it here")
def sessions_combine(session_id: str, bucket: str | None, force: bool, enqueue: bool) -> None:
    """Combine a session now (normally this happens by itself when its last chunk lands)."""
    b = _bucket(bucket)
    if enqueue:
        from tasks.celery_app import COMBINE_TASK, make_app

        result = make_app().send_task(COMBINE_TASK, args=[session_id], kwargs={"bucket": b, "force": force})
        click.echo(f"queued combine_session {result.id}")
        return
    from tasks.combine import run_combine
    from tasks.delivery import RetryLater

    try:
        outcome = run_combine(b, session_id, force=force)
    except RetryLater as r:
        raise click.ClickException(f"not combined now: {r.reason}; try again") from None
    click.echo(json.dumps(outcome))
    sys.exit(0 if outcome.get("status") in ("combined", "exists") else 1)


# --- beat: `stt-router beat` and `stt-router drain` (the schedule and the process: beat_schedule.py) ---

@click.command("beat")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=2, show_default=True,
              help="processes running beat's tasks (a long drain never delays the scaler with 2)")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--hostname", "-n", help="worker name (default beat@<host>)")
@click.option("--show", is_flag=True, help="print the schedule and the next drains, then exit")
def beat_command(concurrency: int, loglevel: str, hostname: str | None, show: bool) -> None:
    """Run Celery beat: the midnight drain, the session sweeper and the GPU scaler.

    One always-on process without a GPU: beat (RedBeat; a Redis lock lets exactly one beat send,
    so a second `stt-router beat` elsewhere is a standby) plus a small worker that runs beat's
    tasks from CONTROL_QUEUE.
    """
    from beat_schedule import BeatSettingsError, check, describe, run_beat

    s = _settings()
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


@click.command("drain")
@click.option("--now", is_flag=True, help="run the drain in this process (it publishes the chords itself)")
@click.option("--dry-run", is_flag=True, help="only show the backlog and the capacity it would ask for")
@click.option("--bucket", help="default S3_BUCKET")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def drain_command(now: bool, dry_run: bool, bucket: str | None, as_json: bool) -> None:
    """Run the midnight drain once, by hand.

    Without --now the drain task goes to CONTROL_QUEUE, where `stt-router beat` runs it (as at
    midnight; the summary is in beat's log). With --now (or --dry-run) it runs here: find the chunks
    without a transcript or failed record, ask for GPU capacity, send one chord per session.
    """
    from tasks.celery_app import DRAIN_TASK, make_app
    from tasks.drain import run_drain

    s = _settings()
    b = bucket or s.s3_bucket
    if not (now or dry_run):
        result = make_app(s).send_task(DRAIN_TASK, kwargs={"bucket": b}, queue=s.control_queue)
        click.echo(f"queued drain {result.id} on {s.control_queue} (run by `stt-router beat`)")
        return

    try:
        summary = run_drain(b, dry_run=dry_run)
    except TranscriptionError as e:
        raise click.ClickException(e.reason) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    sys.exit(0 if summary["status"] in ("drained", "dry_run") and "error" not in summary.get("capacity", {}) else 1)


def _print_summary(summary: dict[str, Any]) -> None:
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
