"""The transcript model: what a chunk transcript and a session transcript hold.

A chunk transcript is the per-chunk truth stored at `transcripts/<id>/chunks/<n>.json`; a session
transcript concatenates chunks in index order with shifted times (see `combine.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

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
    # set on the marker that stands in for a chunk that could not be transcribed
    gap: bool = False

    def shifted(self, offset: float) -> Segment:
        """A copy with every time moved by `offset` seconds."""
        words = None
        if self.words is not None:
            words = [w.model_copy(update={"start": w.start + offset, "end": w.end + offset}) for w in self.words]
        return self.model_copy(update={"start": self.start + offset, "end": self.end + offset, "words": words})


class Transcript(BaseModel):
    """What both chunk and session transcripts share, and what the renderers need."""

    schema_version: int = SCHEMA_VERSION
    language: str | None = None
    duration: float = 0.0
    segments: list[Segment] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip()).strip()


class ChunkTranscript(Transcript):
    kind: Literal["chunk"] = "chunk"
    session_id: str | None = None
    chunk_index: int | None = None
    source_key: str | None = None
    language_probability: float | None = None
    engine: str
    model: str
    options: dict[str, object] = Field(default_factory=dict)
    processing_s: float | None = None


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


class SessionTranscript(Transcript):
    kind: Literal["session"] = "session"
    session_id: str
    title: str | None = None
    partial: bool = False  # some chunks failed or are missing
    chunks: list[ChunkEntry] = Field(default_factory=list)
    engine: str | None = None
    model: str | None = None
    repair: dict[str, object] | None = None  # boundary repair record, when it ran
