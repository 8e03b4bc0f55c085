"""The local EventBridge loop: the path a deployment takes, with an SQS queue standing in for Lambda.

    S3 (EventBridge notifications on) -> EventBridge rule (bucket, sessions/ prefix) -> SQS queue
        -> `stt-router router-local` long-polls it -> handler(event, context), the event unchanged

moto's EventBridge cannot invoke a Lambda function but does deliver to an SQS target, so the events
the handler sees here are the ones S3 produced. The loop behaves like the deployed function: each
event is one invocation with the function's timeout, several run at once (`--concurrency`), a
failed invocation is retried with a growing delay, and after `MAX_RECEIVES` deliveries the event
moves to `<queue>-dlq` (the template's retry policy and dead-letter queue). Against real AWS it
works the same, for a development bucket.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import boto3

from router_lambda.events import rule_pattern
from router_lambda.handler import handler as default_handler
from transcription.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "stt-router-events"
DEFAULT_RULE = "stt-router-sessions"
MAX_RECEIVES = 9  # the first delivery plus the template's 8 retries (RetryPolicy.MaximumRetryAttempts)
FUNCTION_TIMEOUT_S = 150  # the template's function timeout
RETRY_DELAY_S = (5, 10, 20, 40, 80, 160, 300)  # after the 1st, 2nd, ... failed invocation


@dataclass
class LocalContext:
    """The parts of a Lambda context the handler reads."""

    timeout_s: float
    aws_request_id: str
    function_name: str = "stt-router-local"

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _clients(settings: Settings) -> tuple[Any, Any, Any]:
    session = boto3.session.Session()
    region, endpoint = settings.aws_region, settings.aws_endpoint_url
    return (session.client("s3", region_name=region, endpoint_url=endpoint),
            session.client("sqs", region_name=region, endpoint_url=endpoint),
            session.client("events", region_name=region, endpoint_url=endpoint))


def setup(bucket: str, settings: Settings, queue: str = DEFAULT_QUEUE, rule: str = DEFAULT_RULE,
          visibility_timeout_s: int = FUNCTION_TIMEOUT_S + 30) -> str:
    """Turn on the bucket's EventBridge notifications and route its `sessions/` uploads to `queue`.

    Idempotent: other notification settings of the bucket are kept; the rule and queues are
    created or updated. Returns the queue URL.
    """
    s3, sqs, events = _clients(settings)
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    if "EventBridgeConfiguration" not in current:
        s3.put_bucket_notification_configuration(Bucket=bucket,
                                                 NotificationConfiguration={**current, "EventBridgeConfiguration": {}})
    dlq_url = sqs.create_queue(QueueName=f"{queue}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = _arn(sqs, dlq_url)
    attributes = {"VisibilityTimeout": str(int(visibility_timeout_s)), "MessageRetentionPeriod": "1209600",
                  "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)})}
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    queue_arn = _arn(sqs, url)
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps(rule_pattern(bucket)), State="ENABLED",
                               Description=f"s3://{bucket}/sessions/ Object Created -> {queue}")["RuleArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": queue_arn,
                       "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}],
    })})
    events.put_targets(Rule=rule, Targets=[{"Id": "router", "Arn": queue_arn}])
    log.info("router-local: s3://%s/sessions/ -> rule %s -> %s", bucket, rule, url)
    return url


def _arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def decode_body(body: str) -> Any:
    """The event as EventBridge sent it; a body that is not JSON is passed on as the string it is."""
    try:
        return json.loads(body)
    except ValueError:
        return body


class Loop:
    """Long-poll the events queue and invoke the handler once per event, `concurrency` at a time."""

    def __init__(self, queue_url: str, settings: Settings, *, concurrency: int = 4, wait_s: int = 5,
                 timeout_s: float = FUNCTION_TIMEOUT_S, handler: Callable[[Any, Any], Any] | None = None) -> None:
        if handler is None:
            handler = default_handler
        self.queue_url = queue_url
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.wait_s = wait_s
        self.timeout_s = timeout_s
        self.handler = handler
        self.stop = threading.Event()
        self.invocations = 0
        self.failures = 0
        self._sqs = _clients(settings)[1]

    def run(self, *, until_idle: bool = False) -> None:
        """Until `stop` is set (or, with `until_idle`, until the queue is empty and nothing runs)."""
        inflight: set[Future] = set()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="invoke") as pool:
            while not self.stop.is_set():
                inflight = {f for f in inflight if not f.done()}
                free = self.concurrency - len(inflight)
                if free == 0:
                    wait(inflight, timeout=1, return_when=FIRST_COMPLETED)
                    continue
                messages = self._receive(free, 1 if inflight or until_idle else self.wait_s)
                if not messages and until_idle and not inflight:
                    break
                inflight |= {pool.submit(self._invoke, m) for m in messages}
            wait(inflight)

    def _receive(self, n: int, wait_s: int) -> list[dict[str, Any]]:
        try:
            return self._sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=min(10, n),
                                             WaitTimeSeconds=wait_s,
                                             AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        except Exception as e:  # the queue is unreachable for now: keep polling, like the event source
            log.warning("router-local: receive failed: %s", e)
            self.stop.wait(2)
            return []

    def _invoke(self, message: dict[str, Any]) -> None:
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        context = LocalContext(self.timeout_s, message.get("MessageId") or str(uuid.uuid4()))
        self.invocations += 1
        try:
            self.handler(decode_body(message.get("Body", "")), context)
        except Exception as e:
            self.failures += 1
            delay = RETRY_DELAY_S[min(receives - 1, len(RETRY_DELAY_S) - 1)]
            log.error("router-local: invocation failed (delivery %d of %d; again in %d s): %s", receives,
                      MAX_RECEIVES, delay, e)
            try:
                self._sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                                    VisibilityTimeout=delay)
            except Exception as e2:  # it comes back after the queue's visibility timeout instead
                log.warning("router-local: could not schedule the retry: %s", e2)
            return
        try:
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except Exception as e:  # delivered again later; the handler is idempotent
            log.warning("router-local: could not delete a handled event: %s", e)
