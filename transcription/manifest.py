"""The optional session manifest a recorder uploads to `sessions/<id>/manifest.json`.

A recorder's mistake must be visible and must not silently strand its session. The rule:

- `language`, `prompt`, `title`, `webhook_url` are hints: an invalid one is dropped (the language is detected, no
  prompt) and listed in `problems`; the rest of the manifest still counts.
- `total_chunks` ends the session: when it is invalid, or the manifest cannot be read at all (not
  JSON, not an object, too large or too deeply nested), the manifest is `invalid` with the reason.
  The session cannot complete then: `sessions status` says `manifest invalid` and why, the router
  logs a `failed` decision for the manifest and the sweeper lists it among its errors; a corrected
  manifest (recorders may rewrite it) completes the session as usual.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transcription import layout, storage
from transcription.errors import NotFoundError, PermanentError
from transcription.options import LanguageChoice, TranscribeOptions
from transcription.settings import Settings

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 64 << 10
HINTS = ("language", "prompt", "title", "webhook_url", "diarize", "min_speakers", "max_speakers")


class Manifest(BaseModel):
    """Recorder-supplied facts about a session; `total_chunks` marks it complete."""

    model_config = ConfigDict(extra="ignore")

    language: LanguageChoice = None  # a code, or the languages to detect among (["en", "de"])
    prompt: str | None = Field(None, max_length=2000)
    title: str | None = Field(None, max_length=500)
    total_chunks: int | None = Field(None, ge=1, le=1_000_000)  # 0 is invalid: a session has a chunk
    # where this session's completion webhook goes (instead of WEBHOOK_URL); public addresses only
    webhook_url: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s]+$")
    diarize: bool | None = None  # speaker labels for this session (None: the deployment's DIARIZE)
    min_speakers: int | None = Field(None, ge=1, le=100)  # bounds of the session's speaker count, when known
    max_speakers: int | None = Field(None, ge=1, le=100)
    problems: list[str] = Field(default_factory=list, exclude=True)  # hints dropped, and why
    invalid: str | None = Field(None, exclude=True)  # why this manifest cannot end the session

    def apply(self, options: TranscribeOptions) -> TranscribeOptions:
        """The options a chunk of this session is transcribed with (the request wins where set)."""
        merged = options.merged(language=self.language, prompt=self.prompt, min_speakers=self.min_speakers,
                                max_speakers=self.max_speakers)
        if options.diarize is None and self.diarize is not None:
            merged = merged.model_copy(update={"diarize": self.diarize})
        return merged


def parse_manifest(data: Any) -> Manifest:
    """A manifest from parsed JSON, field by field (see the module docstring); never raises."""
    if not isinstance(data, dict):
        return Manifest(invalid=f"the manifest is a JSON {type(data).__name__}, not an object")
    kept: dict[str, Any] = {}
    problems: list[str] = []
    invalid = None
    for name in (*HINTS, "total_chunks"):
        if data.get(name) is None:
            continue
        try:
            Manifest.model_validate({name: data[name]})
            kept[name] = data[name]
        except ValidationError as e:
            why = f"{name}: {e.errors()[0]['msg']}"
            if name == "total_chunks":
                invalid = why
            else:
                problems.append(f"{why} (ignored)")
    return Manifest.model_validate(kept).model_copy(update={"problems": problems, "invalid": invalid})


def load_manifest(bucket: str, session_id: str, *, settings: Settings | None = None) -> Manifest | None:
    """The session's manifest, or None when there is none; an unreadable one is `invalid`."""
    key = layout.manifest_key(session_id)
    try:
        data = storage.get_json(bucket, key, max_bytes=MAX_MANIFEST_BYTES, settings=settings)
    except NotFoundError:
        return None
    except PermanentError as e:  # not JSON, too large, too deep: said without the content
        manifest = Manifest(invalid=e.reason)
    else:
        manifest = parse_manifest(data)
    if manifest.invalid or manifest.problems:
        log.warning("manifest_problem key=%s invalid=%s problems=%s", key, manifest.invalid, manifest.problems)
    return manifest
