"""After `/transcribe-s3` stores a session chunk's transcript: the session-completion check.

When a session's manifest says it is complete (`total_chunks`) and every chunk is transcribed or
failed, the session is combined exactly once. The check and the one-shot trigger are the task
system's (`transcription.sessions.should_combine`, `tasks.enqueue.trigger_combine`, which publishes
`tasks.combine_session`); the server only calls them here, after the response is sent.
"""

from __future__ import annotations

import logging

from tasks.enqueue import trigger_combine
from transcription.layout import ChunkKey
from transcription.settings import Settings

log = logging.getLogger(__name__)


def after_chunk_transcribed(bucket: str, chunk: ChunkKey, settings: Settings) -> None:
    """Runs as a background task: it never delays or fails the request. A check that fails here is
    caught up by beat's sweeper, since the chunk's transcript is already stored."""
    try:
        trigger_combine(bucket, chunk.session_id, settings=settings)
    except Exception:
        log.exception("session completion check failed for session %s", chunk.session_id)
