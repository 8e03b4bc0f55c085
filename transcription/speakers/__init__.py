"""Who said what: diarizers beside the engines, speaker labels on words and segments, and the
linking of chunk-local speakers into one session's speakers.

Importing this package loads nothing heavy: the diarizers (torch, pyannote) load on first use,
through `get_diarizer`, and only in a process that transcribes (a server or a worker).
"""

from __future__ import annotations

from transcription.speakers.base import Diarization, Diarizer, get_diarizer, reset_diarizer, wanted

__all__ = ["Diarization", "Diarizer", "get_diarizer", "reset_diarizer", "wanted"]
