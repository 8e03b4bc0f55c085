"""The rules for known speakers' names and reference clips, checked before any audio is decoded.

Pure Python (no numpy): the manifest parser, which the router imports, checks a manifest's
`speakers` with them. The clips themselves are decoded and embedded by `names.py`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from pydantic import BaseModel, Field

from transcription.errors import SpeakerReferenceError

DIARIZER = "local"  # whose voices are CAM++ centroids, comparable with a reference's embedding
MAX_REQUEST_REFERENCES = 4  # OpenAI's limit for known_speaker_references[]
MAX_MANIFEST_REFERENCES = 8
MAX_REFERENCE_BYTES = 1 << 20
MIN_REFERENCE_S = 2.0
MAX_REQUEST_REFERENCE_S = 10.0  # OpenAI: each sample between 2 and 10 seconds
MAX_MANIFEST_REFERENCE_S = 30.0
MIN_RMS = 1e-3  # quieter than about -60 dBFS throughout: no voice to recognise
# a name shows in every format (`<v Diane>` in VTT, `[Diane]` in SRT): letters, digits, spaces and . ' -
NAME = re.compile(r"[^\W_][\w .'\-]{0,63}")
RESERVED = re.compile(r"SPEAKER_\d+|[A-Z]")  # the labels of unnamed speakers (sessions; OpenAI's route)
_MEDIA = re.compile(r"(audio|video)/[\w.+-]+|application/octet-stream|")


class SpeakerReference(BaseModel):
    """A manifest's known person of the session and their reference clip (inside the session's prefix)."""

    name: str = Field(max_length=64)
    reference_key: str = Field(max_length=1024)


def check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name.strip()):
        raise SpeakerReferenceError(f"{where}: a name is 1 to 64 letters, digits, spaces or . ' - (starting with a "
                                    "letter or digit)")
    name = name.strip()
    if RESERVED.fullmatch(name):
        raise SpeakerReferenceError(f"{where}: {name!r} is the label of an unnamed speaker; choose another name")
    return name


def check_names(names: Sequence[object], where: str) -> list[str]:
    checked = [check_name(n, f"{where}[{i}]") for i, n in enumerate(names)]
    seen: set[str] = set()
    for i, n in enumerate(checked):
        if n.casefold() in seen:
            raise SpeakerReferenceError(f"{where}[{i}]: {n!r} is named twice")
        seen.add(n.casefold())
    return checked


def decode_data_url(url: str, where: str) -> bytes:
    """The bytes of a base64 data URL of audio; a `SpeakerReferenceError` saying why for anything else."""
    if not url.startswith("data:"):
        raise SpeakerReferenceError(f"{where}: only data URLs are accepted (data:audio/wav;base64,...); "
                                    "nothing is fetched")
    header, comma, payload = url[5:].partition(",")
    params = [p.strip().lower() for p in header.split(";")]
    if not comma or "base64" not in params[1:]:
        raise SpeakerReferenceError(f"{where}: a data URL of base64 audio is expected (data:audio/wav;base64,...)")
    if not _MEDIA.fullmatch(params[0]):
        raise SpeakerReferenceError(f"{where}: media type {params[0][:40]!r} is not audio")
    if len(payload) > (MAX_REFERENCE_BYTES + 2) // 3 * 4 + 8:
        raise SpeakerReferenceError(f"{where}: over the limit of {MAX_REFERENCE_BYTES >> 10} KiB of audio")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SpeakerReferenceError(f"{where}: not valid base64") from None
    if not data:
        raise SpeakerReferenceError(f"{where}: the clip is empty")
    return data


def check_reference_key(session_id: str, key: object, where: str) -> str:
    """A manifest's `reference_key`: an object inside the session's own prefix (`sessions/<id>/...`)."""
    from transcription.errors import InvalidKeyError
    from transcription.layout import check_session_file_key

    if not isinstance(key, str):
        raise SpeakerReferenceError(f"{where}: reference_key must be a string")
    try:
        return check_session_file_key(session_id, key)
    except InvalidKeyError as e:
        raise SpeakerReferenceError(f"{where}: {e.reason}") from None
