"""The error tree: tasks retry `RetryableError` and nothing else.

Retryable means "the same call may succeed later" (a network blip, S3 throttling, a GPU out of
memory); permanent means "it never will" (bad audio, a bad key, a missing model).
"""

from __future__ import annotations


class TranscriptionError(Exception):
    """Base of every error this project raises on purpose."""

    retryable: bool = False
    kind: str = "error"  # short label for metrics, failed records and HTTP responses

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryableError(TranscriptionError):
    retryable = True
    kind = "retryable"


class NetworkError(RetryableError):
    kind = "network"


class StorageError(RetryableError):
    """S3 failed in a way that may pass (throttling, 5xx, connection)."""

    kind = "storage"


class EngineOutOfMemory(RetryableError):
    kind = "out_of_memory"


class PermanentError(TranscriptionError):
    kind = "permanent"


class AudioError(PermanentError):
    """The input is empty, truncated, not audio, undecodable, too long or too slow to decode."""

    kind = "bad_audio"


class UnsupportedMediaError(AudioError):
    """Not a container we accept at all (sniffed from the first bytes): HTTP 415 rather than 422."""


class InvalidKeyError(PermanentError):
    """An S3 key or session id that does not fit the layout, or is unsafe."""

    kind = "bad_key"


class AccessRefused(PermanentError):
    """A bucket or key this caller may not read or write (outside the configured bucket and prefixes)."""

    kind = "forbidden"


class NotFoundError(PermanentError):
    kind = "not_found"


class ChangedError(NotFoundError):
    """The object is no longer the version asked for: overwritten (a re-uploaded chunk) since."""

    kind = "changed"


class ModelError(PermanentError):
    """A model is missing, corrupted, or not usable with this engine."""

    kind = "model"


class OptionError(PermanentError):
    """A request asked for something this engine or configuration cannot do."""

    kind = "bad_option"


class RequestParameterError(OptionError):
    """A request parameter in a shape the API does not take (OpenAI's `chunking_strategy` that is neither
    "auto" nor a server_vad object): HTTP 400 with the reason, as OpenAI answers."""

    kind = "bad_parameter"


class TooLarge(PermanentError):
    """An upload, download or request body over its limit."""

    kind = "too_large"


class UrlRefused(PermanentError):
    """A URL the server will not fetch: not http(s), or a non-public address."""

    kind = "url_refused"


class UrlFetchError(PermanentError):
    """A URL that could not be fetched: unresolvable, unreachable, an HTTP error, too slow."""

    kind = "url_fetch"


class StreamHeaderPending(RetryableError):
    """A piece that continues a stream (a recorder's timeslice) whose first chunk, holding the
    stream's header, is not uploaded yet: it waits, and is transcribed once that chunk is there."""

    kind = "waiting_for_header"


class SpeakerReferenceError(PermanentError):
    """A known speaker's name or reference clip that cannot be used (not a data URL, not audio, too
    long, too short, too many): HTTP 400 on OpenAI's route; named in a session's report, never fatal."""

    kind = "bad_reference"
