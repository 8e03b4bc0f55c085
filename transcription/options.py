"""Per-request transcription options: one model travels from the caller to the engine."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from transcription.errors import OptionError


def _language(v: object) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ValueError("language must be a string")
    v = v.strip().lower()
    if not (2 <= len(v) <= 3 and v.isalpha()):
        raise ValueError("language must be an ISO 639-1 code such as 'en'")
    return v


Language = Annotated[str | None, BeforeValidator(_language)]


class TranscribeOptions(BaseModel):
    """What a caller may ask of one transcription. Defaults are the engine's defaults."""

    model_config = ConfigDict(extra="forbid")

    language: Language = Field(None, description="ISO 639-1 code; None detects the language")
    prompt: str | None = Field(None, max_length=2000, description="names and terms to bias the model")
    word_timestamps: bool = False
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    task: Literal["transcribe", "translate"] = "transcribe"
    align: bool = Field(False, description="wav2vec2 word alignment (whisperx; needs ALIGN_MODEL)")
    diarize: bool = Field(False, description="speaker labels (whisperx; needs DIARIZE_MODEL)")

    def merged(self, **defaults: object) -> TranscribeOptions:
        """Fill fields the caller left unset from `defaults` (e.g. a session manifest)."""
        update = {k: v for k, v in defaults.items() if v is not None and getattr(self, k) in (None, "")}
        return TranscribeOptions.model_validate({**self.model_dump(), **update})


def check_language(code: str | None) -> None:
    """Refuse a language Whisper does not know, with the reason (not a crash deep in the engine)."""
    if code is None:
        return
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:  # the engine is not installed here; it will check itself
        return
    if code not in _LANGUAGE_CODES:
        raise OptionError(f"unsupported language {code!r}")
