"""Settings: the seed's names, Celery's and boto3's names, and `.env` files."""

from __future__ import annotations

from pathlib import Path

from transcription.settings import Settings, get_settings


def test_environment_names(env) -> None:
    env.setenv("AWS_REGION", "eu-west-1")
    env.setenv("SQS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/transcribe")
    env.setenv("FAST_API_SERVER_URL", "http://gpu:8000")
    env.setenv("FAST_API_ECR_REPOSITORY_URI", "1.dkr.ecr.eu-west-1.amazonaws.com/stt")
    env.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/3")
    env.setenv("ENGINE", "whisperx")
    env.setenv("API_KEY", "s3cret")
    env.setenv("ROUTER_RETRY_WAITS_S", "[0.1, 0.2]")
    s = get_settings()
    assert s.aws_region == "eu-west-1"
    assert s.sqs_queue_url.endswith("/transcribe")
    assert s.fast_api_server_url == "http://gpu:8000"
    assert s.fast_api_ecr_repository_uri.endswith("/stt")
    assert s.celery_broker_url == "redis://127.0.0.1:6379/3"
    assert s.engine == "whisperx"
    assert s.api_key.get_secret_value() == "s3cret" and "s3cret" not in repr(s)
    assert s.router_retry_waits_s == [0.1, 0.2]


def test_dotenv_file(env, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("S3_BUCKET=from-dotenv\nBATCH_SIZE=16\n")
    env.chdir(tmp_path)
    env.delenv("S3_BUCKET", raising=False)
    s = Settings()
    assert s.s3_bucket == "from-dotenv" and s.batch_size == 16


def test_cpu_defaults() -> None:
    s = Settings(device="cpu")
    assert s.resolved_device() == "cpu" and s.resolved_compute_type() == "int8"
    assert Settings(device="cuda").resolved_compute_type() == "float16"


def test_every_setting_has_a_description() -> None:
    """The configuration reference (docs/configuration.md) is generated from these descriptions."""
    missing = [n.upper() for n, f in Settings.model_fields.items() if len((f.description or "").split()) < 3]
    assert not missing, f"give these settings Field(..., description=\"...\"): {missing}"
