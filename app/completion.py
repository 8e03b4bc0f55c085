"""After `/transcribe-s3` stores a session chunk's transcript: the session-completion check.

When a session's manifest says it is complete (`total_chunks`) and every chunk is transcribed or
failed, the session is combined exactly once. That check is the task system's core function
(`transcription/sessions.py`, issue 4); it plugs in here, in `after_chunk_transcribed`, and nowhere
else in the server. Until it exists this only logs; the worker path and beat's sweeper still
combine such sessions.
"""

from __future__ import annotations

import logging

from transcription.layout import ChunkKey
from transcription.settings import Settings

log = logging.getLogger(__name__)


def after_chunk_transcribed(bucket: str, chunk: ChunkKey, settings: Settings) -> None:
    """Runs after the response is sent (a background task): it never delays or fails the request."""
    try:
        log.debug("chunk transcribed: s3://%s/%s (session %s)", bucket, chunk.key, chunk.session_id)
        # The session-completion check goes here: if the session is complete, enqueue combine_session.
    except Exception:  # a failed check is retried by the sweeper; the chunk's transcript is already stored
        log.exception("session completion check failed for %s", chunk.session_id)
