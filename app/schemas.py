"""Request and response models of the server's API (they are also its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transcription import layout
from transcription.errors import InvalidKeyError, OptionError
from transcription.options import TranscribeOptions

ResponseFormat = Literal["json", "verbose_json", "text", "srt", "vtt", "tsv"]
OpenAIResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error the server answers: a readable reason and a short machine label."""

    detail: str = Field(description="why the request failed, readable")
    kind: str = Field(description="short label: bad_audio, bad_key, not_found, busy, unauthorized, too_large, ...")
    errors: list[dict[str, Any]] | None = Field(None, description="field errors of a request that did not validate")
    error: OpenAIErrorBody | None = Field(None, description="the same, OpenAI-shaped (on /v1 routes)")


class Health(BaseModel):
    status: Literal["ready", "loading", "busy", "failed"] = Field(
        description="ready: takes a chunk now (HTTP 200); otherwise HTTP 503"
    )
    engine: str
    model: str
    device: str | None = None
    inflight: int = Field(description="inferences running now")
    capacity: int = Field(description="inferences that may run at once")
    reason: str | None = Field(None, description="why the engine failed to load (status failed)")


class OptionFields(TranscribeOptions):
    """The transcription options, flattened into a JSON request body."""

    model_config = ConfigDict(extra="forbid")

    def options(self) -> TranscribeOptions:
        return TranscribeOptions.model_validate(self.model_dump(include=set(TranscribeOptions.model_fields)))


def _s3_uri(value: str) -> str:
    try:
        layout.parse_s3_uri(value)
    except InvalidKeyError as e:
        raise ValueError(e.reason) from None
    return value


class TranscribeS3Request(OptionFields):
    """The router's call: transcribe an S3 object and store the transcript."""

    s3_input_path: str = Field(max_length=1100,
                               examples=["s3://stt-router/sessions/meet1/chunks/0.wav"],
                               description="s3://bucket/key of the audio")
    s3_output_path: str | None = Field(
        None, max_length=1100,
        description="where to write the transcript JSON; default for a sessions/<id>/chunks/<n> key: "
                    "transcripts/<id>/chunks/<n>.json in the same bucket (otherwise nothing is written)",
    )

    @field_validator("s3_input_path", "s3_output_path")
    @classmethod
    def _check_paths(cls, v: str | None) -> str | None:
        return None if v is None else _s3_uri(v)


class TranscribeUrlRequest(OptionFields):
    url: str = Field(max_length=2048, examples=["https://example.com/talk.mp3"],
                     description="http(s) URL of the audio; only public addresses are fetched")
    response_format: ResponseFormat = "json"


class TranscriptionText(BaseModel):
    """OpenAI's `json` response."""

    text: str


class VerboseSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    speaker: str | None = None


class VerboseWord(BaseModel):
    word: str
    start: float
    end: float


class VerboseTranscription(BaseModel):
    """OpenAI's `verbose_json` response."""

    task: str
    language: str | None
    duration: float
    text: str
    segments: list[VerboseSegment]
    words: list[VerboseWord] | None = None


def build_options(**fields: Any) -> TranscribeOptions:
    """Options from request fields, or `OptionError` with the reason (a 422, not a 500)."""
    try:
        return TranscribeOptions.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise OptionError(f"{where}: {first['msg']}" if where else first["msg"]) from None


class DiarizedSegment(BaseModel):
    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    speaker: str = Field(description="a known speaker's name where their reference clip matches, else A, B, ...")


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class DiarizedTranscription(BaseModel):
    """OpenAI's `diarized_json` response (`transcription/speakers/diarized.py`)."""

    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[DiarizedSegment]
    usage: DurationUsage
