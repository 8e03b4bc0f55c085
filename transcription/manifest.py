"""The optional session manifest a recorder uploads to `sessions/<id>/manifest.json`.

A recorder's mistake must be visible and must not silently strand its session. The rule:

- `language`, `prompt`, `title`, `webhook_url` are hints: an invalid one is dropped (the language is detected, no
  prompt) and listed in `problems`; the rest of the manifest still counts.
- `speakers` names people by reference clips (`[{"name": "Diane", "reference_key": "sessions/<id>/speakers/d.wav"}]`,
  see `transcription/speakers/names.py`): a bad entry (a name or key that breaks the rules, one too
  many) is dropped and listed in `problems`; the others still count. A clip that cannot be used is
  found when the session is combined and named in the session transcript's `speaker_problems`.
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
from transcription.speakers.rules import SpeakerReference

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
    speakers: list[SpeakerReference] | None = None  # known people, named where a voice matches their clip
    problems: list[str] = Field(default_factory=list, exclude=True)  # hints dropped, and why
    invalid: str | None = Field(None, exclude=True)  # why this manifest cannot end the session

    def apply(self, options: TranscribeOptions) -> TranscribeOptions:
        """The options a chunk of this session is transcribed with (the request wins where set)."""
        merged = options.merged(language=self.language, prompt=self.prompt, min_speakers=self.min_speakers,
                                max_speakers=self.max_speakers)
        diarize = self.diarize if self.diarize is not None else (True if self.speakers else None)
        if options.diarize is None and diarize is not None:  # known speakers need speakers to name
            merged = merged.model_copy(update={"diarize": diarize})
        return merged


def parse_speakers(data: Any, session_id: str | None) -> tuple[list[SpeakerReference], list[str]]:
    """The usable entries of a manifest's `speakers`, and a problem for each entry that is not."""
    from transcription.errors import SpeakerReferenceError
    from transcription.speakers.rules import MAX_MANIFEST_REFERENCES, check_name, check_reference_key

    if not isinstance(data, list):
        return [], ["speakers: a list of {\"name\", \"reference_key\"} is expected (ignored)"]
    kept: list[SpeakerReference] = []
    problems: list[str] = []
    for i, entry in enumerate(data):
        where = f"speakers[{i}]"
        if i >= MAX_MANIFEST_REFERENCES:
            problems.append(f"{where}: at most {MAX_MANIFEST_REFERENCES} known speakers (ignored)")
            continue
        try:
            if not isinstance(entry, dict):
                raise SpeakerReferenceError(f"{where}: an object with name and reference_key is expected")
            name = check_name(entry.get("name"), f"{where}.name")
            key = entry.get("reference_key")
            if session_id is not None:
                key = check_reference_key(session_id, key, f"{where}.reference_key")
            elif not isinstance(key, str):
                raise SpeakerReferenceError(f"{where}.reference_key: a key is expected")
            if any(k.name.casefold() == name.casefold() for k in kept):
                raise SpeakerReferenceError(f"{where}.name: {name!r} is named twice")
            kept.append(SpeakerReference(name=name, reference_key=key))
        except (SpeakerReferenceError, ValidationError) as e:
            problems.append(f"{getattr(e, 'reason', where + ': invalid')} (ignored)")
    return kept, problems


def parse_manifest(data: Any, session_id: str | None = None) -> Manifest:
    """A manifest from parsed JSON, field by field (see the module docstring); never raises.
    `session_id`: the session it belongs to (its speakers' reference keys must be inside its prefix)."""
    if not isinstance(data, dict):
        return Manifest(invalid=f"the manifest is a JSON {type(data).__name__}, not an object")
    kept: dict[str, Any] = {}
    problems: list[str] = []
    if data.get("speakers") is not None:
        speakers, speaker_problems = parse_speakers(data["speakers"], session_id)
        problems += speaker_problems
        if speakers:
            kept["speakers"] = [s.model_dump() for s in speakers]
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
        manifest = parse_manifest(data, session_id)
    if manifest.invalid or manifest.problems:
        log.warning("manifest_problem key=%s invalid=%s problems=%s", key, manifest.invalid, manifest.problems)
    return manifest
