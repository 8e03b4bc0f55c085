"""The transcript model: what a chunk transcript and a session transcript hold.

A chunk transcript is the per-chunk truth stored at `transcripts/<id>/chunks/<n>.json`; a session
transcript concatenates chunks in index order with shifted times (see `combine.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class Word(BaseModel):
    start: float
    end: float
    word: str
    probability: float | None = None
    speaker: str | None = None


class Segment(BaseModel):
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    speaker: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    language: str | None = None  # the language it was decoded in (None: the transcript's)
    # set on the marker that stands in for a chunk that could not be transcribed
    gap: bool = False

    def shifted(self, offset: float) -> Segment:
        """A copy with every time moved by `offset` seconds."""
        words = None
        if self.words is not None:
            words = [w.model_copy(update={"start": w.start + offset, "end": w.end + offset}) for w in self.words]
        return self.model_copy(update={"start": self.start + offset, "end": self.end + offset, "words": words})

    def clamped(self, lo: float, hi: float) -> Segment:
        """A copy with every time inside [lo, hi] (rounded to the millisecond) and no end before its start.

        A chunk's (or regrouped piece's) segments are clamped to its own span, so its times never
        reach into a neighbour's and a session's times never run backwards across a boundary.
        """
        def inside(x: float) -> float:
            return round(min(max(x, lo), hi), 3)

        words = None if self.words is None else [
            w.model_copy(update={"start": inside(w.start), "end": inside(max(w.end, w.start))}) for w in self.words]
        return self.model_copy(update={"start": inside(self.start), "end": inside(max(self.end, self.start)),
                                       "words": words})


class SpeakerTurn(BaseModel):
    """A span of time one speaker talks in (turns of two speakers may overlap)."""

    start: float
    end: float
    speaker: str


class LocalSpeaker(BaseModel):
    """A speaker as one chunk's diarizer saw it: what linking needs, so it never re-reads audio."""

    id: str  # chunk-local label, e.g. SPEAKER_00
    duration: float  # seconds this speaker talks in the chunk
    embedding: list[float] = Field(default_factory=list)  # unit-length centroid of its voice embeddings


class SessionSpeaker(BaseModel):
    """A speaker of a session: the chunk-local speakers linked into it, in first-appearance order."""

    id: str  # SPEAKER_1..N, or a name
    duration: float
    members: list[str] = Field(default_factory=list)  # "<chunk index>:<local id>"
    name_distance: float | None = None  # named by a reference clip: its cosine distance to this voice


class Transcript(BaseModel):
    """What both chunk and session transcripts share, and what the renderers need."""

    schema_version: int = SCHEMA_VERSION
    language: str | None = None
    duration: float = 0.0
    segments: list[Segment] = Field(default_factory=list)
    turns: list[SpeakerTurn] | None = None  # speaker turns, when diarized
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip()).strip()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def languages(self) -> dict[str, float]:
        """The languages its segments were decoded in, with their seconds of speech (longest first)."""
        spoken: dict[str, float] = {}
        for seg in self.segments:
            language = seg.language or self.language
            if language and not seg.gap and seg.text.strip():
                spoken[language] = spoken.get(language, 0.0) + max(0.0, seg.end - seg.start)
        return {k: round(v, 3) for k, v in sorted(spoken.items(), key=lambda kv: -kv[1])}


class ChunkTranscript(Transcript):
    kind: Literal["chunk"] = "chunk"
    session_id: str | None = None
    chunk_index: int | None = None
    source_key: str | None = None
    # the audio version it was made from (issue 14, hole 9): the object's ETag, and its VersionId
    # where the bucket has versioning
    source_etag: str | None = None
    source_version: str | None = None
    language_probability: float | None = None
    engine: str
    model: str
    options: dict[str, object] = Field(default_factory=dict)
    processing_s: float | None = None
    # which path wrote it: `direct` (the server's /transcribe-s3, the router's call) or `queued` (a worker)
    via: Literal["direct", "queued"] | None = None
    speakers: list[LocalSpeaker] | None = None  # chunk-local speakers with their voice centroids, when diarized
    diarizer: str | None = None  # e.g. "local" or "pyannote:<model>"; linking joins only one diarizer's voices
    # a piece of a recorder's stream: the chunk that starts its stream (its own index for the first
    # piece) and where the piece begins on that stream's timeline, in seconds (from its timestamps)
    stream_from: int | None = None
    stream_start: float | None = None
    # [first, last] chunk indices when this chunk was transcribed with its neighbours in one engine
    # call (a run, `transcription/runs.py`): there is no cut between the chunks of one run
    run: list[int] | None = None


class FailedChunk(BaseModel):
    """The record at `failed/<id>/chunks/<n>.json`: why a chunk has no transcript."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["failed"] = "failed"
    session_id: str
    chunk_index: int
    source_key: str
    error: str  # the error kind, e.g. bad_audio
    reason: str
    attempts: int = 1
    duration: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ChunkEntry(BaseModel):
    """One chunk's place in a session transcript."""

    index: int
    source_key: str | None = None
    offset: float
    duration: float
    status: Literal["transcribed", "failed", "missing"]
    reason: str | None = None
    language: str | None = None  # the language the chunk was transcribed in
    run: list[int] | None = None  # the chunk's run, [first, last], when it was transcribed in one
    # for a transcribed chunk: the audio version its transcript was made from (boundary repair
    # reads that one), and the ETag of the chunk transcript combined (a newer one recombines)
    source_etag: str | None = None
    source_version: str | None = None
    transcript_etag: str | None = None


class SessionTranscript(Transcript):
    kind: Literal["session"] = "session"
    session_id: str
    title: str | None = None
    partial: bool = False  # some chunks failed or are missing
    chunks: list[ChunkEntry] = Field(default_factory=list)
    engine: str | None = None
    model: str | None = None
    repair: dict[str, object] | None = None  # boundary repair record, when it ran
    speakers: list[SessionSpeaker] | None = None  # session speakers, when the chunks were diarized
    # known speakers (a manifest's `speakers`) that could not be used, each with the reason
    speaker_problems: list[str] | None = None
