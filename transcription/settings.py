"""The one settings object every part reads (environment variables and `.env`).

Names follow what the ecosystem already uses (boto3's `AWS_*`, Celery's `CELERY_*`), so an
existing environment just works. Every field is listed in the README's configuration table.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "stt-router"


class Settings(BaseSettings):
    """All configuration, one field per environment variable (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- AWS and storage -------------------------------------------------------------------
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None  # e.g. moto's server; boto3 also reads it itself
    s3_bucket: str = "stt-router"
    sqs_queue_url: str | None = None  # a predefined production `transcribe` queue
    sqs_dlq_url: str | None = None  # a predefined production `transcribe-dlq` queue
    fast_api_ecr_repository_uri: str | None = None

    # --- Celery and Redis ------------------------------------------------------------------
    celery_broker_url: str = "sqs://"
    celery_result_backend: str = "redis://127.0.0.1:6379/0"
    redis_url: str = "redis://127.0.0.1:6379/0"
    transcribe_queue: str = "transcribe"
    dead_letter_queue: str = "transcribe-dlq"
    visibility_timeout_s: int = 3600  # above the longest task; short (20-30 s) in tests
    task_time_limit_s: int = 1800
    task_max_retries: int = 5
    task_retry_backoff_s: float = 5.0  # first retry wait; doubles per retry up to the cap
    task_retry_backoff_max_s: int = 600
    lease_ttl_s: int = 60  # per-chunk lease, renewed while its holder runs; expires this long after it dies
    max_receive_count: int = 3  # deliveries before a chunk that keeps killing its worker is dead-lettered
    worker_concurrency: int = 1
    worker_proc_alive_timeout_s: float = 300.0  # a pool process may take this long to load the engine
    worker_idle_timeout_s: int = 0  # 0 = never stop for idleness
    worker_stop_action: Literal["none", "stop", "terminate"] = "none"
    worker_metrics_port: int = 0  # 0 = no metrics endpoint
    worker_metrics_host: str = "127.0.0.1"  # where the worker's metrics endpoint listens (0.0.0.0 to scrape)
    task_events_redis: bool = True  # publish task events over Redis so Flower sees SQS workers

    # --- the server and the router's call to it --------------------------------------------
    fast_api_server_url: str = "http://127.0.0.1:8000"
    api_key: SecretStr | None = None
    api_key_secret_arn: str | None = None  # the router reads API_KEY from this secret when API_KEY is unset
    allow_insecure_no_api_key: bool = False
    server_capacity: int = 1  # concurrent inferences
    slot_wait_s: float = 2.0  # how long a request waits for a slot before 503
    public_metrics: bool = True  # /metrics without the API key
    max_upload_mb: int = 100
    url_fetch_timeout_s: float = 30.0
    url_fetch_allowlist: list[str] = Field(default_factory=list)  # CIDRs allowed despite being private
    url_fetch_max_redirects: int = 5
    max_json_kb: int = 64  # body limit of the server's JSON routes
    server_host: str = "127.0.0.1"  # `stt-router serve` binds here unless --host says otherwise
    server_port: int = 8000
    router_health_timeout_s: float = 2.0
    router_request_timeout_s: float = 900.0
    router_attempts: int = Field(3, ge=1)  # direct /transcribe-s3 attempts before the chunk is queued
    router_retry_waits_s: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0])

    # --- engine and model ------------------------------------------------------------------
    engine: Literal["faster-whisper", "whisperx"] = "faster-whisper"
    model: str = "base"  # the bundled name (base), a local CTranslate2 directory, or a hub name
    device: Literal["cpu", "cuda", "auto"] = "auto"
    compute_type: str = "default"  # int8 on CPU, float16 on CUDA when "default"
    batch_size: int = 8
    cpu_threads: int = 0  # 0 = let CTranslate2 decide
    beam_size: int = 5
    model_cache_dir: Path = Field(default_factory=_default_cache_dir)
    align_model: str | None = None  # whisperx alignment (wav2vec2) model directory or name
    diarize_model: str | None = None  # pyannote diarization pipeline directory
    hf_token: SecretStr | None = None

    # --- audio limits ----------------------------------------------------------------------
    max_audio_s: float = 4 * 3600.0
    decode_timeout_s: float = 120.0
    max_chunk_mb: int = 512

    # --- beat, drain and capacity ----------------------------------------------------------
    timezone: str = "UTC"
    drain_hour: int = 0
    drain_minute: int = 0
    sweep_interval_s: int = 300
    scaling_policy: Literal["midnight", "queue-depth"] = "midnight"
    capacity_mode: Literal["none", "ec2", "asg"] = "none"
    ec2_instance_ids: list[str] = Field(default_factory=list)
    asg_name: str | None = None
    max_gpu_workers: int = 4
    # queue-depth rule: one worker per this many waiting chunks (a cold start's worth of work; README)
    chunks_per_worker: int = Field(100, ge=1)
    control_queue: str = "transcribe-control"  # drain, sweeper and scaler tasks, run by `stt-router beat`
    sqs_control_queue_url: str | None = None  # a predefined production control queue
    beat_key_prefix: str = "stt:beat:"  # RedBeat's schedule and lock keys in REDIS_URL
    beat_max_interval_s: float = Field(30.0, gt=0)  # beat's longest sleep; a standby takes over after 5x
    drain_catch_up_s: int = Field(6 * 3600, ge=0)  # a drain missed while beat was down runs if this recent

    # --- session transcripts ---------------------------------------------------------------
    boundary_repair: bool = True
    boundary_window_s: float = 3.0
    # runs of chunks shorter than this are transcribed again as one piece when combined (0 = never)
    boundary_regroup_below_s: float = Field(15.0, ge=0)
    boundary_regroup_span_s: float = Field(600.0, gt=0)  # ... in pieces of at most this many seconds
    chunk_context: bool = True  # prompt a session chunk with the end of the previous chunk's transcript

    # --- monitoring ------------------------------------------------------------------------
    flower_basic_auth: SecretStr | None = None  # "user:password"; required by `stt-router flower`

    def resolved_device(self) -> str:
        """`auto` means CUDA when CTranslate2 sees a GPU, else CPU."""
        if self.device != "auto":
            return self.device
        try:
            import ctranslate2

            return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        except Exception:
            return "cpu"

    def resolved_compute_type(self) -> str:
        if self.compute_type != "default":
            return self.compute_type
        return "float16" if self.resolved_device() == "cuda" else "int8"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the env."""
    return Settings()
