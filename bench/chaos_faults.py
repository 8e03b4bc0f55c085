"""The faults of the chaos run, each made the way it happens for real where that is possible.

- `RandomFaultProxy`: the fault proxy of the router tests (`tests/support/faults.py`) in front of the
  API server, answering a share of `POST /transcribe-s3` with 5xx and stalling another share past the
  router's timeout (then forwarding it late, as a slow server would: that late run is a duplicate
  execution whose write is refused).
- `S3FaultProxy`: the same proxy in front of moto's S3 for the GPU worker only; failing the GETs of
  chosen chunks makes their tasks fail once (a real S3 error through botocore's own retries).
- Corrupt chunks: five kinds of bad input with audio file names.
- The poison chunk: valid audio carrying a marker that `bench/chaos_hooks/sitecustomize.py` (a fake,
  on the worker's path only) turns into a SIGKILL of the process decoding it.
- Duplicate events: a second EventBridge rule with the same pattern and target, so S3 delivers
  every event twice (EventBridge's at-least-once delivery, made certain).
- Failed sends: `hold_events` takes chosen keys' events off the router's rule and delivers them to
  a queue of the run's own, so that the run can invoke the router's handler on such an event with
  its broker at a dead endpoint (the send raises for real) before handing the event to the router,
  as Lambda's retry would.
"""

from __future__ import annotations

import json
import os
import random
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.faults import Fault, FaultProxy

TRANSCRIBE_S3 = "/transcribe-s3"


@dataclass
class ProxyCounts:
    requests: int = 0
    injected_5xx: int = 0
    stalled: int = 0
    forwarded: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


class QuietProxy(FaultProxy):
    """A fault proxy whose clients may vanish (killed, timed out) without a traceback on stderr."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self._server.handle_error = lambda *a: None


class RandomFaultProxy(QuietProxy):
    """`fail_rate` of `POST /transcribe-s3` answered 5xx, `stall_rate` held `stall_s` then forwarded.

    The shares are exact per block of 10 requests (a shuffled deck of outcomes), so even a short
    run sees each fault, in a random order.
    """

    def __init__(self, upstream: str, *, fail_rate: float, stall_rate: float, stall_s: float, seed: int) -> None:
        super().__init__(upstream)
        self.fail_rate, self.stall_rate, self.stall_s = fail_rate, stall_rate, stall_s
        self.rng = random.Random(seed)
        self.counts = ProxyCounts()
        self._deck: list[str] = []
        self._count_lock = threading.Lock()

    def _draw(self) -> str:
        if not self._deck:
            fails, stalls = round(10 * self.fail_rate), round(10 * self.stall_rate)
            self._deck = ["fail"] * fails + ["stall"] * stalls + ["forward"] * max(0, 10 - fails - stalls)
            self.rng.shuffle(self._deck)
        return self._deck.pop()

    def _take(self, method: str, path: str) -> Fault | None:
        queued = super()._take(method, path)
        if queued is not None or method != "POST" or path != TRANSCRIBE_S3:
            return queued
        with self._count_lock:
            self.counts.requests += 1
            outcome = self._draw()
            if outcome == "fail":
                self.counts.injected_5xx += 1
                status = self.rng.choice([500, 502, 503, 504])
                return Fault(method, path, status=status,
                             body=json.dumps({"detail": f"chaos: injected {status}", "kind": "injected"}).encode())
            if outcome == "stall":
                self.counts.stalled += 1
                return Fault(method, path, action="forward", delay_s=self.stall_s)
            self.counts.forwarded += 1
            return None

    def figures(self) -> dict[str, Any]:
        seen = self.seen("POST", TRANSCRIBE_S3)
        statuses: dict[str, int] = {}
        for s in seen:
            k = str(s.status)
            statuses[k] = statuses.get(k, 0) + 1
        return {"requests": self.counts.requests, "injected_5xx": self.counts.injected_5xx,
                "stalled_past_timeout": self.counts.stalled, "forwarded_at_once": self.counts.forwarded,
                "stall_s": self.stall_s, "answers": statuses}


class S3FaultProxy(QuietProxy):
    """moto's S3 for the GPU worker; `fail_gets(bucket, key, n)` makes the next n GETs of an object 500."""

    def fail_gets(self, bucket: str, key: str, n: int) -> None:
        for _ in range(n):
            self.inject("GET", f"/{bucket}/{key}", status=500,
                        body=b"<Error><Code>InternalError</Code><Message>chaos: injected</Message></Error>",
                        headers={"Content-Type": "application/xml"})

    def injected(self) -> int:
        return sum(1 for s in self.seen("GET") if s.injected)


# --- bad input ----------------------------------------------------------------------------------
def corrupt_chunks(wav: bytes) -> list[tuple[str, bytes, str]]:
    """(extension, bytes, what it is): five chunks no decoder can turn into speech."""
    return [
        ("wav", b"RIFF\x24\x10\x00\x00WAVEfmt " + os.urandom(4000), "a WAV header followed by noise bytes"),
        ("wav", wav[: len(wav) // 3], "a WAV cut to a third of its stated length"),
        ("mp3", b"this is a text file with an audio name\n" * 40, "text with an .mp3 name"),
        ("ogg", b"OggS" + os.urandom(3000), "an Ogg signature followed by noise bytes"),
        ("m4a", b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\nhttp://169.254.169.254/latest/meta-data/\n",
         "an HLS playlist pointing at a local file and the metadata service"),
    ]


def poison_chunk(wav: bytes, marker: str) -> bytes:
    """A valid WAV with one extra RIFF chunk after its audio holding `marker` (decoders skip it)."""
    payload = marker.encode()
    if len(payload) % 2:
        payload += b"\x00"
    body = wav + b"chao" + struct.pack("<I", len(payload)) + payload
    return body[:4] + struct.pack("<I", len(body) - 8) + body[8:]


# --- duplicate events -----------------------------------------------------------------------------
def duplicate_events(events: Any, sqs: Any, rule: str, queue_url: str) -> str:
    """A second rule with `rule`'s pattern and target: every matching event is delivered twice."""
    original = events.describe_rule(Name=rule)
    dup = f"{rule}-duplicate"
    arn = events.put_rule(Name=dup, EventPattern=original["EventPattern"], State="ENABLED",
                          Description="chaos run: every event delivered twice")["RuleArn"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": queue_arn,
                       "Condition": {"ArnEquals": {"aws:SourceArn": [original["Arn"], arn]}}}],
    })})
    events.put_targets(Rule=dup, Targets=[{"Id": "router-duplicate", "Arn": queue_arn}])
    return dup


def _allow_rule(sqs: Any, queue_url: str, rule_arns: list[str]) -> str:
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": queue_arn,
                       "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}}}],
    })})
    return queue_arn


def hold_events(events: Any, sqs: Any, rule: str, prefixes: list[str], held: list[str], queue: str) -> str:
    """Narrow `rule` to `prefixes` (which must not cover the `held` keys) and deliver the events of
    the `held` keys to `queue` instead, through a rule of their own; returns that queue's URL.

    Call it before `duplicate_events`, which copies `rule`'s pattern."""
    original = events.describe_rule(Name=rule)
    pattern = json.loads(original["EventPattern"])
    pattern["detail"]["object"]["key"] = [{"prefix": p} for p in prefixes]
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED",
                    Description=original.get("Description", ""))
    held_pattern = json.loads(original["EventPattern"])
    held_pattern["detail"]["object"]["key"] = list(held)
    arn = events.put_rule(Name=f"{rule}-held", EventPattern=json.dumps(held_pattern), State="ENABLED",
                          Description="chaos run: events the run invokes the router on first")["RuleArn"]
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = _allow_rule(sqs, url, [arn])
    events.put_targets(Rule=f"{rule}-held", Targets=[{"Id": "held", "Arn": queue_arn}])
    return url


def speech_pool(n: int) -> list[tuple[str, Path]]:
    """`n` (sentence, file) pairs of generated speech: the test sentences in several containers and
    speeds, cached on disk, so hundreds of chunks cost a handful of espeak-ng runs."""
    from tests.support.speech import SENTENCES, speak

    formats = ("wav", "mp3", "flac", "ogg", "m4a", "webm")
    speeds = (150, 135, 165)
    pool = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        pool.append((text, speak(text, formats[(i // len(SENTENCES) + i) % len(formats)],
                                 speed=speeds[(i // len(SENTENCES)) % len(speeds)])))
    return pool
