"""`stt-router dlq ...` and `stt-router sessions ...`: what an operator needs to see and fix."""

from __future__ import annotations

import json
import sys

import click


def _bucket(bucket: str | None) -> str:
    from transcription.settings import get_settings

    return bucket or get_settings().s3_bucket


@click.group()
def dlq() -> None:
    """The dead-letter queue (DEAD_LETTER_QUEUE): chunks that failed, with the reason."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def dlq_list(as_json: bool) -> None:
    """Show every dead letter and why it is there (nothing is removed)."""
    from tasks.dlq import DeadLetterQueue

    letters = DeadLetterQueue().list()
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
@click.option("--json", "as_json", is_flag=True)
def sessions_status(session_id: str, bucket: str | None, as_json: bool) -> None:
    """Chunks transcribed, queued and failed, and whether the session transcript exists."""
    from transcription import layout
    from transcription.errors import TranscriptionError
    from transcription.sessions import session_status

    try:
        st = session_status(_bucket(bucket), session_id, with_reasons=True)
    except TranscriptionError as e:
        raise click.ClickException(e.reason) from e
    if as_json:
        click.echo(json.dumps(st.as_dict(), indent=2))
        return
    if not st.uploaded and st.manifest is None:
        raise click.ClickException(f"no session {session_id!r} in s3://{_bucket(bucket)}/sessions/")
    expected = st.expected if st.expected is not None else "unknown (no total_chunks in a manifest yet)"
    click.echo(f"session {session_id}: {st.state}")
    click.echo(f"  chunks expected:   {expected}")
    click.echo(f"  uploaded:          {len(st.uploaded)}")
    click.echo(f"  transcribed:       {len(st.transcribed)}")
    click.echo(f"  queued/in flight:  {len(st.pending)} {_indices(st.pending)}")
    click.echo(f"  failed:            {len(st.failed)} {_indices(st.failed)}")
    for i, reason in sorted(st.failed_reasons.items()):
        click.echo(f"    chunk {i}: {reason}")
    where = f"s3://{_bucket(bucket)}/{layout.session_transcript_key(session_id, 'json')}"
    click.echo(f"  session transcript: {'yes, ' + where if st.combined else 'not yet'}")


def _indices(values: list[int]) -> str:
    if not values:
        return ""
    shown = ", ".join(map(str, values[:20]))
    return f"[{shown}{', ...' if len(values) > 20 else ''}]"


@sessions.command("list")
@click.option("--bucket", help="default S3_BUCKET")
def sessions_list(bucket: str | None) -> None:
    """Every session and its state."""
    from transcription.sessions import list_sessions, session_status

    b = _bucket(bucket)
    ids = list_sessions(b)
    for sid in ids:
        st = session_status(b, sid)
        click.echo(f"{sid}  {st.state}  transcribed={len(st.transcribed)} failed={len(st.failed)} "
                   f"pending={len(st.pending)} expected={st.expected if st.expected is not None else '?'}")
    click.echo(f"{len(ids)} session(s)")


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
    from tasks.retry import RetryLater
    from tasks.session import run_combine

    try:
        outcome = run_combine(b, session_id, force=force)
    except RetryLater as r:
        raise click.ClickException(f"not combined now: {r.reason}; try again") from None
    click.echo(json.dumps(outcome))
    sys.exit(0 if outcome.get("status") in ("combined", "exists") else 1)
