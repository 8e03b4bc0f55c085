"""Per-request transcription options: one model travels from the caller to the engine."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

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


def split_languages(v: object) -> tuple[str | None, list[str] | None]:
    """A language hint as (fixed language, candidates): "en" fixes English; ["en", "de"] or "en,de"
    leaves the language to detection among those only; None or "" detects among all."""
    if isinstance(v, str) and "," in v:
        v = v.split(",")
    if isinstance(v, list | tuple):
        codes = list(dict.fromkeys(c for c in (_language(x) for x in v) if c))
        if len(codes) > 1:
            return None, codes
        return (codes[0] if codes else None), None
    return _language(v), None


def _language_choice(v: object) -> str | list[str] | None:
    fixed, among = split_languages(v)
    return among if among else fixed


# a fixed language, or the languages detection may choose from (a manifest's `language`)
LanguageChoice = Annotated[str | list[str] | None, BeforeValidator(_language_choice)]


class VadOptions(BaseModel):
    """Voice activity detection before decoding (faster-whisper's Silero VAD, its `VadOptions` names and
    defaults): only the stretches it hears speech in are decoded. OpenAI's `chunking_strategy`
    `server_vad` maps onto it (`app/chunking.py`); without it the decode runs as it always has."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, ge=0.0, le=1.0, description="speech probability above which a frame is speech")
    min_silence_duration_ms: int = Field(2000, ge=0, le=60000, description="silence this long ends a speech stretch")
    speech_pad_ms: int = Field(400, ge=0, le=60000, description="audio kept on each side of a speech stretch")


class TranscribeOptions(BaseModel):
    """What a caller may ask of one transcription. Defaults are the engine's defaults."""

    model_config = ConfigDict(extra="forbid")

    language: Language = Field(None, description=(
        "ISO 639-1 code; None detects the language; a list (or `en,de`) detects among those only"))
    languages: list[str] | None = Field(None, description=(
        "The languages detection may choose from (set from a list given as `language`)"))
    prompt: str | None = Field(None, max_length=2000, description="names and terms to bias the model")
    word_timestamps: bool = False
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    task: Literal["transcribe", "translate"] = "transcribe"
    align: bool = Field(False, description="wav2vec2 word alignment (whisperx; needs ALIGN_MODEL)")
    diarize: bool | None = Field(None, description=(
        "speaker labels (None: the deployment's DIARIZE; true with DIARIZE=off uses the offline diarizer)"))
    min_speakers: int | None = Field(None, ge=1, le=100, description="at least this many speakers (diarization)")
    max_speakers: int | None = Field(None, ge=1, le=100, description="at most this many speakers (diarization)")
    vad: VadOptions | None = Field(None, description=(
        "decode only where voice activity detection hears speech (None: the engine's usual decode)"))

    @model_validator(mode="before")
    @classmethod
    def _language_list(cls, data: object) -> object:
        """`language` as a list (or `en,de`) means detect among those: it becomes `languages`."""
        if isinstance(data, dict) and ("language" in data or "languages" in data):
            fixed, among = split_languages(data.get("language"))
            if fixed is None and data.get("languages"):
                among = [c for c in (_language(x) for x in data["languages"]) if c] or None
            data = {**data, "language": fixed, "languages": among if fixed is None else None}
        return data

    def merged(self, **defaults: object) -> TranscribeOptions:
        """Fill fields the caller left unset from `defaults` (e.g. a session manifest)."""
        update = {k: v for k, v in defaults.items() if v is not None and getattr(self, k) in (None, "")}
        if "language" in update and self.languages:  # the caller's own candidates win over a default
            del update["language"]
        return TranscribeOptions.model_validate({**self.model_dump(), **update})


def check_language(code: str | list[str] | None) -> None:
    """Refuse a language Whisper does not know, with the reason (not a crash deep in the engine)."""
    if code is None:
        return
    if isinstance(code, list):
        for c in code:
            check_language(c)
        return
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:  # the engine is not installed here; it will check itself
        return
    if code not in _LANGUAGE_CODES:
        raise OptionError(f"unsupported language {code!r}")
