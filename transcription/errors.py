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


class NotFoundError(PermanentError):
    kind = "not_found"


class ModelError(PermanentError):
    """A model is missing, corrupted, or not usable with this engine."""

    kind = "model"


class OptionError(PermanentError):
    """A request asked for something this engine or configuration cannot do."""

    kind = "bad_option"
