"""Re-uploaded chunks: which audio a chunk transcript was made from, and which transcript wins.

A recorder may upload a chunk again (a retry, a corrected file) before or after it was transcribed.
The rule (issue 14, hole 9):

- A chunk transcript records the audio version it was made from: the audio object's ETag, and its
  VersionId where the bucket has versioning, in its JSON (`source_etag`, `source_version`) and as
  the transcript object's metadata (`x-amz-meta-source-etag`, `-source-version`), so one HEAD of
  the transcript tells it.
- "The transcript exists" (the router's, the worker's and the server's skip) means a transcript of
  the audio's *current* ETag exists (`transcript_is_current`). A chunk overwritten after it was
  transcribed is transcribed again. A transcript written before sources were recorded counts as
  current (nothing stored is re-transcribed on upgrade).
- A transcript is stored by `store_transcript`, a loop of conditional writes: created with
  `If-None-Match: *`, or replaced with `If-Match: <the transcript's ETag>` and only when the stored
  one is of another audio and ours is of the audio that is current now (HEAD just before). A
  transcript of superseded audio is never written, and two writers replacing the same transcript
  cannot both win: the loser reads again and finds the winner current (a duplicate) or its own
  audio superseded. A write can still land between that HEAD and a newer upload; that newer
  upload's own event then finds the transcript not current and replaces it, so the last upload's
  transcript is what stays.
- Boundary repair reads each chunk's audio at the version its transcript was made from (by
  VersionId, or `If-Match` on the ETag), or skips that chunk's boundaries if it changed since.
- A session transcript records, per chunk, the ETag of the chunk transcript it was combined from;
  a chunk transcript replaced since makes the session outdated and it is combined again (under the
  combine lease, overwriting). So "combined exactly once" holds per set of audio versions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from transcription import layout, storage
from transcription.errors import NotFoundError, StorageError
from transcription.settings import Settings
from transcription.storage import Version

log = logging.getLogger(__name__)

SOURCE_ETAG = "source-etag"  # user metadata of a chunk transcript object (x-amz-meta-source-etag)
SOURCE_VERSION = "source-version"
MAX_WRITE_ROUNDS = 5  # conditional writes racing each other converge in two; more is S3 misbehaving

Stored = Literal["written", "replaced", "duplicate", "superseded"]


@dataclass(frozen=True)
class StoredTranscript:
    """A transcript object: its own version (a replacement's `If-Match`), and the audio it was made
    from (None when written before sources were recorded)."""

    own: Version
    source: Version | None


def metadata(source: Version) -> dict[str, str]:
    out = {SOURCE_ETAG: source.etag or ""}
    if source.version_id:
        out[SOURCE_VERSION] = source.version_id
    return out


def stored_transcript(bucket: str, key: str, *, settings: Settings | None = None) -> StoredTranscript | None:
    """One HEAD of the transcript object; None when there is none."""
    try:
        own, meta = storage.head(bucket, key, settings=settings)
    except NotFoundError:
        return None
    etag = meta.get(SOURCE_ETAG)
    return StoredTranscript(own, Version(etag, meta.get(SOURCE_VERSION)) if etag else None)


def made_from(stored: StoredTranscript, audio: Version) -> bool:
    """The stored transcript is of this audio (or of unrecorded audio, taken as current)."""
    return stored.source is None or stored.source.etag == audio.etag


def current_audio(bucket: str, key: str, *, settings: Settings | None = None) -> Version | None:
    """The audio's current version; None when it is gone."""
    try:
        return storage.head(bucket, key, settings=settings)[0]
    except NotFoundError:
        return None


def transcript_is_current(audio: tuple[str, str], out: tuple[str, str], *,
                          settings: Settings | None = None) -> bool:
    """True when a transcript of the `audio` object's current version is stored at `out`: two HEADs
    (one when there is no transcript). Audio that is gone keeps the transcript it has."""
    stored = stored_transcript(*out, settings=settings)
    if stored is None:
        return False
    if stored.source is None:
        return True
    now = current_audio(*audio, settings=settings)
    return now is None or made_from(stored, now)


def chunk_is_transcribed(bucket: str, chunk: layout.ChunkKey, *, settings: Settings | None = None) -> bool:
    """The skip of the router and the worker: the chunk's current audio has its transcript."""
    return transcript_is_current((bucket, chunk.key), (bucket, chunk.transcript_key), settings=settings)


def store_transcript(out: tuple[str, str], body: bytes, source: Version, audio: tuple[str, str], *,
                     settings: Settings | None = None) -> Stored:
    """Write a transcript made from `source` (a version of the `audio` object) at `out`, by the
    rule in the module docstring: `written` (created), `replaced` (an older audio's transcript
    overwritten), `duplicate` (this audio's transcript is there already: ours refused) or
    `superseded` (the audio changed since we read it: ours is not written)."""
    out_bucket, out_key = out
    meta = metadata(source)
    for _ in range(MAX_WRITE_ROUNDS):
        now = current_audio(*audio, settings=settings)
        if now is not None and source.etag is not None and now.etag != source.etag:
            log.warning("superseded_transcript_refused key=%s audio=%s current=%s", out_key, source.etag, now.etag)
            return "superseded"
        stored = stored_transcript(out_bucket, out_key, settings=settings)
        if stored is None:
            if storage.put_json(out_bucket, out_key, body, if_absent=True, metadata=meta, settings=settings):
                return "written"
            continue  # another writer created it first: look at what it wrote
        if made_from(stored, source):
            return "duplicate"
        if storage.put_json(out_bucket, out_key, body, if_match=stored.own.etag, metadata=meta, settings=settings):
            log.info("transcript_replaced key=%s audio=%s was=%s", out_key, source.etag,
                     stored.source.etag if stored.source else None)
            return "replaced"
    raise StorageError(f"s3://{out_bucket}/{out_key}: conditional writes kept racing ({MAX_WRITE_ROUNDS} rounds)")
