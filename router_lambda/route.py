"""One decision per uploaded object: direct, queued, skipped (with the reason), failed, manifest, error.

    not a chunk or manifest, bad key              -> skipped (reason)      never retried: a poison event
    chunk of zero bytes                           -> failed                failed record, dead letter,
                                                                           completion check
    chunk whose audio's transcript exists         -> skipped               duplicate event, own retry (a
                                                                           re-uploaded chunk goes on)
    chunk, server ready, /transcribe-s3 200       -> direct                the server stored it and ran
                                                                           the session-completion check
    chunk, server says the audio is bad (4xx)     -> failed                failed/<id>/chunks/<n>.json,
                                                                           not queued; completion check
    chunk, anything else (busy, down, 5xx x N)    -> queued                tasks.transcribe_chunk on SQS
    manifest                                      -> manifest              the session-completion check
    manifest whose total_chunks is unusable       -> failed                the reason (sessions status too)
    the router could not queue or check           -> error                 the invocation fails, so
                                                                           EventBridge retries the event

Every path is idempotent (a transcript is written once, the task id is the upload's), so a retried
event is safe. Nothing here raises: errors become `error` decisions and the handler decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TextIO

from router_lambda import apikey, direct, publish
from router_lambda.direct import Deadline, DirectResult
from router_lambda.emf import emf_record, emit
from router_lambda.events import ObjectCreated, Parsed, Unusable, parse_event
from transcription import layout, versions
from transcription.errors import InvalidKeyError, PermanentError, TranscriptionError
from transcription.settings import Settings

if TYPE_CHECKING:
    from transcription.transcript import FailedChunk

# transcription.sessions (combining, the transcript models, the formats, the manifest) loads on the
# paths that need it, a failed chunk or a manifest: the direct path decides without it (issue 17)

log = logging.getLogger(__name__)

Action = Literal["direct", "queued", "skipped", "failed", "manifest", "error"]


@dataclass
class Decision:
    """What the router did with one object, and why (one JSON log line)."""

    decision: Action
    reason: str
    bucket: str | None = None
    key: str | None = None
    source: str | None = None
    size: int | None = None
    etag: str | None = None
    session_id: str | None = None
    chunk_index: int | None = None
    task_id: str | None = None
    attempts: int = 0
    ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}


def route_event(event: Any, settings: Settings, deadline: Deadline | None = None, *,
                request_id: str | None = None, stream: TextIO | None = None) -> list[Decision]:
    """Decide for every object in the event, logging one EMF line per decision."""
    deadline = deadline or Deadline()
    decisions = []
    for parsed in parse_event(event):
        d = route(parsed, settings, deadline)
        emit(emf_record(_properties(d, request_id), _metrics(d)), stream)
        decisions.append(d)
    return decisions


def route(parsed: Parsed, settings: Settings, deadline: Deadline | None = None) -> Decision:
    started = time.perf_counter()
    try:
        d = _route(parsed, settings, deadline or Deadline())
    except Exception as e:  # a bug must not lose the event: fail the invocation, EventBridge retries
        log.exception("router internal error")
        d = Decision("error", f"internal error: {type(e).__name__}: {e}"[:500], bucket=getattr(parsed, "bucket", None),
                     key=getattr(parsed, "key", None), source=getattr(parsed, "source", None))
    d.ms = round((time.perf_counter() - started) * 1000, 3)
    return d


def _route(p: Parsed, s: Settings, deadline: Deadline) -> Decision:
    if isinstance(p, Unusable):
        return Decision("skipped", p.reason, bucket=p.bucket, key=p.key, source=p.source)
    base: dict[str, Any] = {"bucket": p.bucket, "key": p.key, "source": p.source, "size": p.size, "etag": p.etag}
    kind, what = layout.classify_key(p.key)
    if kind is None:
        return Decision("skipped", what, **base)
    try:
        layout.parse_s3_uri(f"s3://{p.bucket}/{p.key}")
    except InvalidKeyError as e:
        return Decision("skipped", e.reason, **base)
    base["session_id"] = what
    if kind == "manifest":
        return _manifest(p, s, base)
    chunk = layout.parse_chunk_key(p.key)
    base["chunk_index"] = chunk.index
    if p.size == 0:  # nothing to transcribe, but the session must not wait for it: failed, with the reason
        from transcription.transcript import FailedChunk

        empty = FailedChunk(session_id=chunk.session_id, chunk_index=chunk.index, source_key=chunk.key,
                            error="bad_audio", reason="the chunk is empty (0 bytes)", attempts=1)
        failed = _record_failed(p, chunk, empty, s, base)
        return failed or Decision("error", "zero-byte chunk: its failed record could not be written", **base)
    try:
        if versions.chunk_is_transcribed(p.bucket, chunk, settings=s):  # of its current audio (hole 9)
            return Decision("skipped", "transcript exists", **base)
    except TranscriptionError as e:  # the server and the worker check again before transcribing
        log.warning("transcript check failed for %s: %s", p.key, e.reason)
    if deadline.budget_s() < direct.MIN_ATTEMPT_S:
        ready, why = False, "no time left in this invocation for the direct path"
    else:
        ready, why = direct.probe(s, deadline)
    attempts = 0
    if ready:
        result = _direct(p, s, deadline)
        attempts = result.attempts
        if result.outcome == "transcribed":
            t = result.transcript
            return Decision("direct", "transcribed by the server", attempts=attempts, **base, detail={
                "written": result.written, "language": t.get("language"), "duration": t.get("duration")})
        if result.outcome == "rejected":
            from transcription.transcript import FailedChunk

            record = FailedChunk(session_id=chunk.session_id, chunk_index=chunk.index, source_key=chunk.key,
                                 error=result.error_kind or "rejected", reason=f"HTTP {result.status}: {result.reason}",
                                 attempts=max(1, result.attempts))
            failed = _record_failed(p, chunk, record, s, base, status=result.status)
            if failed is not None:
                return failed
            why = f"the server rejected the chunk ({result.reason}) but its failed record could not be written"
        else:
            why = result.reason
    return _queue(p, s, base, why, attempts)


def _direct(p: ObjectCreated, s: Settings, deadline: Deadline) -> DirectResult:
    try:
        key = apikey.api_key(s)
    except TranscriptionError as e:
        return DirectResult("unavailable", e.reason)
    result = direct.call_server(p.bucket, p.key, s, key, deadline)
    if result.status in (401, 403):  # perhaps a rotated secret: read it again for the next event
        apikey.forget()
    return result


def _record_failed(p: ObjectCreated, chunk: layout.ChunkKey, record: FailedChunk, s: Settings,
                   base: dict[str, Any], status: int | None = None) -> Decision | None:
    """A final 4xx or an empty chunk: write `failed/<id>/chunks/<n>.json`, send its dead letter and
    run the completion check; None if the record cannot be written."""
    from transcription import sessions

    try:
        first = sessions.record_failure(p.bucket, chunk, record, settings=s)  # duplicate events race here
    except TranscriptionError as e:
        log.warning("failed record not written for %s: %s", p.key, e.reason)
        return None
    detail: dict[str, Any] = {"failed_key": chunk.failed_key, **({"status": status} if status else {})}
    if first:  # one dead letter per failed upload, like a queued chunk's, for `dlq list` and `dlq replay`
        try:
            detail["dead_letter"] = publish.dead_letter(p.bucket, p.key, p.etag, error=record.error,
                                                        reason=record.reason, attempts=record.attempts, settings=s)
        except Exception as e:  # the failed record says why; `sessions status` shows it
            detail["dead_letter_error"] = f"{type(e).__name__}: {e}"[:300]
    else:
        detail["duplicate"] = True  # this upload's failure was recorded by an earlier event
    try:
        detail["combine_queued"] = publish.check_session(p.bucket, chunk.session_id, s)
    except Exception as e:  # the record is written; beat's sweeper catches up on the check
        detail["completion_check_error"] = f"{type(e).__name__}: {e}"[:300]
    return Decision("failed", f"{record.error}: {record.reason}", attempts=record.attempts if status else 0,
                    detail=detail, **base)


def _queue(p: ObjectCreated, s: Settings, base: dict[str, Any], why: str, attempts: int) -> Decision:
    try:
        task_id = publish.enqueue(p.bucket, p.key, p.etag, s)
    except Exception as e:
        return Decision("error", f"could not queue the chunk ({why}): {type(e).__name__}: {e}"[:800],
                        attempts=attempts, **base)
    return Decision("queued", why, task_id=task_id, attempts=attempts, **base)


def _manifest(p: ObjectCreated, s: Settings, base: dict[str, Any]) -> Decision:
    from transcription import sessions

    try:
        manifest = sessions.load_manifest(p.bucket, base["session_id"], settings=s)
        if manifest is not None and manifest.invalid:  # the session cannot complete: say so, do not retry
            return Decision("failed", f"manifest invalid: {manifest.invalid}", **base,
                            detail={"problems": manifest.problems} if manifest.problems else {})
        queued = publish.check_session(p.bucket, base["session_id"], s)
    except PermanentError as e:
        return Decision("skipped", f"completion check: {e.reason}", **base)
    except Exception as e:  # S3 or the queue failed: retry the event rather than lose the combine
        return Decision("error", f"completion check failed: {type(e).__name__}: {e}"[:800], **base)
    detail: dict[str, Any] = {"combine_queued": queued}
    if manifest is not None and manifest.problems:
        detail["problems"] = manifest.problems  # hints dropped (e.g. an invalid language)
    return Decision("manifest", "combine queued" if queued else "session not complete, or its combine is done or "
                    "already queued", detail=detail, **base)


def _properties(d: Decision, request_id: str | None) -> dict[str, Any]:
    props = {"event": "router_decision", **d.as_dict()}
    if request_id:
        props["request_id"] = request_id
    return props


def _metrics(d: Decision) -> dict[str, float]:
    metrics = {"Records": 1.0, "DecisionMs": d.ms}
    if d.attempts:
        metrics["DirectAttempts"] = float(d.attempts)
    return metrics


def counts(decisions: list[Decision]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in decisions:
        out[d.decision] = out.get(d.decision, 0) + 1
    return out


def errors(decisions: list[Decision]) -> Iterator[Decision]:
    return (d for d in decisions if d.decision == "error")
