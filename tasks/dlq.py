"""The dead-letter queue: list what is in it and why, replay it to `transcribe`, or drop it.

Two kinds of dead letters land in `transcribe-dlq`, on either broker:
- explicit ones, written by a task that gave up (bad audio, retries exhausted, repeated crashes),
  with a `dead_letter` header holding the reason;
- on SQS, messages the queue's redrive policy moved after maxReceiveCount receives (no reason
  header: their task never finished), and messages no worker could decode.
Message bodies are parsed as JSON only; anything else is shown as undecodable and never replayed.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import Celery

from tasks.broker import queue_url, redis_broker, sqs_client
from tasks.celery_app import REPLAYABLE_TASKS, TRANSCRIBE_TASK, is_sqs, make_app
from tasks.enqueue import DEAD_LETTER_HEADER
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)

PEEK_VISIBILITY_S = 60  # how long a listing holds SQS dead letters before handing them back


@dataclass
class DeadLetter:
    id: str  # the task id (or the SQS message id when the message has none)
    task: str | None
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    kind: str  # "explicit", "redriven" or "undecodable"
    error: str
    reason: str
    attempts: int | None = None
    at: str | None = None
    handle: Any = field(default=None, repr=False)  # SQS receipt handle / raw Redis item

    @property
    def key(self) -> str | None:
        """The chunk key (or session id) the letter is about."""
        return str(self.args[-1]) if self.args else None

    def matches(self, ident: str) -> bool:
        return ident in (self.id, self.key) or (len(ident) >= 8 and self.id.startswith(ident))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("handle")
        d["key"] = self.key
        return d


def parse_envelope(raw: bytes | str, message_id: str, receive_count: int | None = None,
                   redrive_source: str | None = None) -> DeadLetter:
    """A kombu message (SQS body: base64 of the JSON envelope; Redis: the JSON envelope)."""
    try:
        env = _json(raw)
        if not isinstance(env, dict):
            raise ValueError("not a kombu envelope")
    except ValueError as e:
        return DeadLetter(message_id, None, None, None, "undecodable", "undecodable", f"not a kombu message: {e}",
                          receive_count)
    headers = env.get("headers") or {}
    task, task_id = headers.get("task"), str(headers.get("id") or message_id)
    content_type = env.get("content-type")
    if content_type != "application/json":
        return DeadLetter(task_id, task, None, None, "undecodable", "refused_content",
                          f"content type {content_type!r} is not accepted (JSON only); never run", receive_count)
    try:
        body = env.get("body", "")
        if (env.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, *_ = json.loads(body)
    except (ValueError, TypeError, binascii.Error) as e:
        return DeadLetter(task_id, task, None, None, "undecodable", "bad_body", f"unreadable task body: {e}",
                          receive_count)
    letter = headers.get(DEAD_LETTER_HEADER)
    if isinstance(letter, dict):
        return DeadLetter(task_id, task, list(args), dict(kwargs), "explicit", str(letter.get("error", "error")),
                          str(letter.get("reason", "")), letter.get("attempts"), letter.get("at"))
    source = f" from {redrive_source.rsplit(':', 1)[-1]}" if redrive_source else ""
    return DeadLetter(task_id, task, list(args), dict(kwargs), "redriven", "redriven",
                      f"moved by the SQS redrive policy{source} after maxReceiveCount receives: the task never "
                      "finished (it kept killing its worker or running past the visibility timeout)", receive_count)


def _json(raw: bytes | str) -> Any:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(base64.b64decode(text, validate=True))


class DeadLetterQueue:
    """One dead-letter queue on the configured broker."""

    def __init__(self, settings: Settings | None = None, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self._app = app

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = make_app(self.settings)
        return self._app

    # --- reading ---------------------------------------------------------------------------
    def letters(self) -> list[DeadLetter]:
        """Every dead letter, left in the queue (`stt-router dlq list`)."""
        letters = list(self._read())
        self._release(letters)
        return letters

    def _read(self) -> Iterator[DeadLetter]:
        name = self.settings.dead_letter_queue
        if not is_sqs(self.settings):
            for item in redis_broker(self.settings).lrange(name, 0, -1):
                letter = parse_envelope(item, message_id=f"redis-{uuid.uuid5(uuid.NAMESPACE_OID, repr(item)).hex[:12]}")
                letter.handle = item
                yield letter
            return
        client = sqs_client(self.settings)
        url = queue_url(name, self.settings, client)
        visible = int(client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
                      ["Attributes"].get("ApproximateNumberOfMessages", 0))
        seen: set[str] = set()
        empty_rounds = 0
        # SQS returns a sample per call: ask until the visible ones came (the count is approximate,
        # so go on while calls come back full), or two calls bring nothing new
        full = True
        while empty_rounds < 2 and (full or len(seen) < visible):
            resp = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                          VisibilityTimeout=PEEK_VISIBILITY_S, MessageSystemAttributeNames=["All"])
            fresh = [m for m in resp.get("Messages", []) if m["MessageId"] not in seen]
            empty_rounds = 0 if fresh else empty_rounds + 1
            full = len(fresh) == 10
            for m in fresh:
                seen.add(m["MessageId"])
                attrs = m.get("Attributes", {})
                letter = parse_envelope(m["Body"], m["MessageId"], int(attrs.get("ApproximateReceiveCount", 0)) or None,
                                        attrs.get("DeadLetterQueueSourceArn"))
                letter.handle = m["ReceiptHandle"]
                yield letter

    def _release(self, letters: Iterable[DeadLetter]) -> None:
        if not is_sqs(self.settings):
            return
        client = sqs_client(self.settings)
        url = queue_url(self.settings.dead_letter_queue, self.settings, client)
        for letter in letters:
            try:
                client.change_message_visibility(QueueUrl=url, ReceiptHandle=letter.handle, VisibilityTimeout=0)
            except Exception as e:  # it becomes visible again by itself
                log.warning("could not release dead letter %s: %s", letter.id, e)

    def _remove(self, letter: DeadLetter) -> None:
        if is_sqs(self.settings):
            client = sqs_client(self.settings)
            client.delete_message(QueueUrl=queue_url(self.settings.dead_letter_queue, self.settings, client),
                                  ReceiptHandle=letter.handle)
        else:
            redis_broker(self.settings).lrem(self.settings.dead_letter_queue, 1, letter.handle)

    # --- acting ----------------------------------------------------------------------------
    def replay(self, idents: Iterable[str] = (), *, all_: bool = False) -> tuple[list[DeadLetter], list[str]]:
        """Send matching dead letters back to `transcribe`; (replayed, problems)."""
        return self._act(idents, all_, replay=True)

    def drop(self, idents: Iterable[str]) -> tuple[list[DeadLetter], list[str]]:
        """Delete matching dead letters for good."""
        return self._act(idents, False, replay=False)

    def _act(self, idents: Iterable[str], all_: bool, *, replay: bool) -> tuple[list[DeadLetter], list[str]]:
        wanted = list(idents)
        letters = list(self._read())
        done: list[DeadLetter] = []
        problems: list[str] = []
        keep: list[DeadLetter] = []
        matched: set[str] = set()
        for letter in letters:
            hits = [i for i in wanted if letter.matches(i)]
            if not (all_ or hits):
                keep.append(letter)
                continue
            matched.update(hits)
            if replay and (letter.kind == "undecodable" or letter.task not in REPLAYABLE_TASKS):
                problems.append(f"{letter.id}: not replayable ({letter.reason})")
                keep.append(letter)
                continue
            try:
                if replay:
                    self._resend(letter)
                self._remove(letter)
                done.append(letter)
            except Exception as e:
                problems.append(f"{letter.id}: {e}")
                keep.append(letter)
        self._release(keep)
        problems += [f"{i}: no such dead letter" for i in wanted if i not in matched]
        return done, problems

    def _resend(self, letter: DeadLetter) -> None:
        if letter.task is None:
            raise ValueError("a dead letter without a task name is never replayed")
        # the task's own kwargs; a fresh delivery starts its counters (attempt, lease_waits) anew
        kwargs = {k: v for k, v in (letter.kwargs or {}).items() if k not in ("attempt", "lease_waits")}
        if letter.task == TRANSCRIBE_TASK:
            kwargs["force"] = True  # transcribe it although a failed record exists
        self.app.send_task(letter.task, args=letter.args, kwargs=kwargs, task_id=str(uuid.uuid4()),
                           queue=self.settings.transcribe_queue)
        log.info("dead_letter_replayed id=%s task=%s args=%s", letter.id, letter.task, letter.args)
