"""What the stack needs to exist before its parts start: the bucket, the task queues, and the
EventBridge rule that sends the bucket's `sessions/` uploads to the router's queue.

Idempotent, so `stt-router stack init` can run on every start (docker compose runs it first).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from router_lambda.local import setup
from tasks.broker import ensure_queues
from tasks.celery_app import is_sqs, predefined_queues
from transcription.settings import Settings
from transcription.storage import s3_client


def ensure_bucket(bucket: str, settings: Settings) -> bool:
    """Create the bucket unless it exists; True if created."""
    s3 = s3_client(settings)
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs = {}
    if settings.aws_region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
    s3.create_bucket(Bucket=bucket, **kwargs)
    return True


def init_resources(settings: Settings, bucket: str | None = None) -> list[str]:
    """Create what is missing; one line per resource saying what it is."""
    bucket = bucket or settings.s3_bucket
    lines = [f"bucket s3://{bucket} ({'created' if ensure_bucket(bucket, settings) else 'exists'})"]
    if is_sqs(settings) and not predefined_queues(settings):
        queues = ensure_queues(settings)
        lines.append("queues " + ", ".join(queues) + " (with the redrive policy to the dead-letter queue)")
    url = setup(bucket, settings)
    lines.append(f"EventBridge rule: s3://{bucket}/sessions/ Object Created -> {url.rsplit('/', 1)[-1]} "
                 "(the router's queue)")
    return lines
