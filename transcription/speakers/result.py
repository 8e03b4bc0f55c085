"""What a diarizer returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from transcription.transcript import LocalSpeaker, SpeakerTurn


@dataclass
class Diarization:
    """Who speaks when in one piece of audio, with each speaker's voice centroid."""

    turns: list[SpeakerTurn] = field(default_factory=list)
    speakers: list[LocalSpeaker] = field(default_factory=list)
