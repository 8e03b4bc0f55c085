"""The optional session manifest a recorder uploads to `sessions/<id>/manifest.json`."""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transcription import layout, storage
from transcription.errors import NotFoundError, PermanentError
from transcription.options import Language, TranscribeOptions
from transcription.settings import Settings

log = logging.getLogger(__name__)


class Manifest(BaseModel):
    """Recorder-supplied facts about a session; `total_chunks` marks it complete."""

    model_config = ConfigDict(extra="ignore")

    language: Language = None
    prompt: str | None = Field(None, max_length=2000)
    title: str | None = Field(None, max_length=500)
    total_chunks: int | None = Field(None, ge=0, le=1_000_000)

    def apply(self, options: TranscribeOptions) -> TranscribeOptions:
        """The options a chunk of this session is transcribed with (the request wins where set)."""
        return options.merged(language=self.language, prompt=self.prompt)


def load_manifest(bucket: str, session_id: str, *, settings: Settings | None = None) -> Manifest | None:
    """The session's manifest, or None when there is none. An invalid one is logged and ignored."""
    key = layout.manifest_key(session_id)
    try:
        data = storage.get_json(bucket, key, settings=settings)
    except NotFoundError:
        return None
    except PermanentError as e:
        log.warning("ignoring unreadable manifest %s: %s", key, e.reason)
        return None
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        log.warning("ignoring invalid manifest %s: %s", key, e.errors()[:3])
        return None
