"""OpenAI's `chunking_strategy` on `/v1/audio/transcriptions`, as the VAD options of the decode.

OpenAI takes `"auto"` or an object `{"type": "server_vad", "prefix_padding_ms", "silence_duration_ms",
"threshold"}`. Over multipart it arrives as `chunking_strategy=auto`, as the object in JSON (curl's
`-F 'chunking_strategy={...}'`), or as bracketed fields (`chunking_strategy[type]=server_vad`, what
the `openai` Python client sends). `"auto"` is this server's usual decode; `server_vad` decodes only
where faster-whisper's Silero VAD hears speech: `threshold` -> `threshold`, `silence_duration_ms` ->
`min_silence_duration_ms`, `prefix_padding_ms` -> `speech_pad_ms`; a field left out keeps the VAD's
default. Anything else is a `RequestParameterError` (400) saying what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from transcription.errors import RequestParameterError
from transcription.options import VadOptions

NAME = "chunking_strategy"
FIELDS = {"prefix_padding_ms": "speech_pad_ms", "silence_duration_ms": "min_silence_duration_ms",
          "threshold": "threshold"}


def bracketed(items: Iterable[tuple[str, object]]) -> dict[str, object]:
    """The `chunking_strategy[key]` fields of a multipart form's items, by key (a key twice is refused)."""
    out: dict[str, object] = {}
    for name, value in items:
        if name.startswith(f"{NAME}[") and name.endswith("]"):
            key = name[len(NAME) + 1:-1]
            if key in out:
                raise RequestParameterError(f"{NAME}[{key}] given twice")
            out[key] = value
    return out


def vad_options(value: str | None, fields: Mapping[str, object]) -> VadOptions | None:
    """The VAD options `chunking_strategy` asks for; None for "auto" or nothing (the usual decode)."""
    if value is not None and fields:
        raise RequestParameterError(f"{NAME}: give it as one value or as {NAME}[...] fields, not both")
    if fields:
        return _server_vad(dict(fields), from_form=True)
    if value is None or value.strip() == "auto":
        return None
    text = value.strip()
    if not text.startswith("{"):
        raise RequestParameterError(f'{NAME}: {value[:40]!r} is neither "auto" nor a server_vad object '
                                    '({"type": "server_vad", ...})')
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise RequestParameterError(f"{NAME}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RequestParameterError(f"{NAME}: a server_vad object must be a JSON object")
    return _server_vad(obj, from_form=False)


def _server_vad(obj: dict[str, object], *, from_form: bool) -> VadOptions:
    if obj.get("type") != "server_vad":
        raise RequestParameterError(f"{NAME}.type must be 'server_vad' (got {obj.get('type')!r})")
    unknown = sorted(set(obj) - set(FIELDS) - {"type"})
    if unknown:
        raise RequestParameterError(f"{NAME}: unknown field {unknown[0]!r} (server_vad takes "
                                    f"{', '.join(FIELDS)})")
    values: dict[str, object] = {}
    for key, target in FIELDS.items():
        if key not in obj:
            continue
        values[target] = _number(key, obj[key], integer=key != "threshold", from_form=from_form)
    try:
        return VadOptions.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        target = str(first["loc"][0]) if first.get("loc") else ""
        key = next((k for k, t in FIELDS.items() if t == target), target)
        raise RequestParameterError(f"{NAME}.{key}: {first['msg']}") from None


def _number(key: str, raw: object, *, integer: bool, from_form: bool) -> int | float:
    """A JSON number (a form field's text) as the int or float the field takes."""
    what = "an integer" if integer else "a number"
    if from_form and isinstance(raw, str):
        try:
            return int(raw) if integer else float(raw)
        except ValueError:
            raise RequestParameterError(f"{NAME}.{key} must be {what} (got {raw[:40]!r})") from None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or (integer and not isinstance(raw, int)):
        raise RequestParameterError(f"{NAME}.{key} must be {what} (got {raw!r:.40})")
    return raw
