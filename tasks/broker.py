"""The broker underneath Celery: queue URLs, creating the SQS queues, and how deep a queue is
(`queue_depth`: the one reading of a queue's depth, for the scaler, the drain, idle shutdown and metrics).

kombu creates only plain SQS queues, so the local/self-managed setup creates both queues itself:
`transcribe-dlq`, then `transcribe` with the visibility timeout and a RedrivePolicy
(maxReceiveCount) pointing at it. In production the queues come from the deployment template and
their URLs from `SQS_QUEUE_URL` / `SQS_DLQ_URL`; nothing is created then.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import redis
from botocore.exceptions import ClientError

from tasks.celery_app import is_sqs, predefined_queues
from transcription import scaling
from transcription.errors import NetworkError
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)

DLQ_RETENTION_S = 14 * 24 * 3600  # the SQS maximum: dead letters wait two weeks for a replay
DELAYED_ATTRIBUTE = "ApproximateNumberOfMessagesDelayed"  # retries waiting out their countdown


def sqs_client(settings: Settings | None = None) -> Any:
    """boto3 SQS for the broker: `sqs://` uses boto3's own endpoint and credentials (e.g.
    `AWS_ENDPOINT_URL`); `sqs://key:secret@host:port` means that endpoint over http, as in kombu."""
    s = settings or get_settings()
    u = urlsplit(s.celery_broker_url)
    kwargs: dict[str, Any] = {"region_name": s.aws_region}
    if u.hostname:
        kwargs["endpoint_url"] = f"http://{u.hostname}" + (f":{u.port}" if u.port else "")
    if u.username:
        kwargs["aws_access_key_id"] = unquote(u.username)
        kwargs["aws_secret_access_key"] = unquote(u.password or "")
    return boto3.session.Session().client("sqs", **kwargs)


def queue_url(name: str, settings: Settings | None = None, client: Any = None) -> str:
    s = settings or get_settings()
    predefined = predefined_queues(s)
    if name in predefined:
        return predefined[name]["url"]
    client = client or sqs_client(s)
    return client.get_queue_url(QueueName=name)["QueueUrl"]


def ensure_queues(settings: Settings | None = None) -> dict[str, str]:
    """Create (or fix the attributes of) the SQS queue pair; {name: url}. Idempotent."""
    s = settings or get_settings()
    client = sqs_client(s)
    dlq_url = create_or_update_queue(client, s.dead_letter_queue, {"MessageRetentionPeriod": str(DLQ_RETENTION_S)})
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = create_or_update_queue(client, s.transcribe_queue, {
        "VisibilityTimeout": str(s.visibility_timeout_s),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(s.max_receive_count)}),
    })
    log.info("queues ready: %s (redrive to %s after %d receives)", url, dlq_url, s.max_receive_count)
    return {s.transcribe_queue: url, s.dead_letter_queue: dlq_url}


def create_or_update_queue(client: Any, name: str, attributes: dict[str, str]) -> str:
    """Create an SQS queue with `attributes`, or set them on the queue of that name; its URL."""
    try:
        return client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as e:  # it exists with other attributes (e.g. created plain by kombu)
        if e.response.get("Error", {}).get("Code") not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def redrive_max_receive_count(settings: Settings | None = None) -> int | None:
    """maxReceiveCount of the `transcribe` queue's redrive policy, if it has one and may be read."""
    s = settings or get_settings()
    if not is_sqs(s):
        return None
    try:
        client = sqs_client(s)
        attrs = client.get_queue_attributes(QueueUrl=queue_url(s.transcribe_queue, s, client),
                                            AttributeNames=["RedrivePolicy"])["Attributes"]
        return int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"])
    except Exception as e:  # no policy, no permission, no queue yet: the setting applies
        log.info("no redrive policy read (%s); MAX_RECEIVE_COUNT=%d applies", e, s.max_receive_count)
        return None


def redis_broker(settings: Settings | None = None) -> Any:
    return redis.Redis.from_url((settings or get_settings()).celery_broker_url, socket_timeout=10,
                                socket_connect_timeout=5)


@dataclass(frozen=True)
class QueueDepth:
    """A queue's messages: `waiting` (visible, or delayed: a retry waiting out its countdown; work not
    started) and `in_flight` (received by a worker, not yet deleted: work running now)."""

    waiting: int
    in_flight: int


def queue_depth(name: str, settings: Settings | None = None) -> QueueDepth:
    """How deep queue `name` is, on either broker; NetworkError when the broker cannot say."""
    s = settings or get_settings()
    try:
        if is_sqs(s):
            client = sqs_client(s)
            attrs = client.get_queue_attributes(QueueUrl=queue_url(name, s, client),
                                                AttributeNames=[*scaling.QUEUE_ATTRIBUTES, DELAYED_ATTRIBUTE])
            visible, in_flight = scaling.queue_depth(attrs["Attributes"])
            return QueueDepth(visible + int(attrs["Attributes"].get(DELAYED_ATTRIBUTE, 0)), in_flight)
        # kombu's Redis transport: one list per queue (and per priority step, suffixed); every delivered,
        # unacknowledged message of every queue in one `unacked` hash
        r = redis_broker(s)
        waiting = sum(int(r.llen(k)) for k in {name, *r.scan_iter(match=f"{name}\x06\x16*")})
        return QueueDepth(waiting, sum(1 for _, raw in r.hscan_iter("unacked") if _routing_key(raw) == name))
    except Exception as e:
        raise NetworkError(f"cannot read the depth of queue {name}: {e}") from e


def _routing_key(raw: bytes | str) -> str | None:
    try:
        return json.loads(raw)[2]
    except (ValueError, IndexError, TypeError):
        return None
