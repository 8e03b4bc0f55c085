"""`tasks.send_webhook(event)`: the completion event POSTed to `WEBHOOK_URL`, signed, once per event id.

Queued by the combine right after the event is announced (`transcription.events.announce`). One
delivery ends as any task's does (`tasks.delivery`): sent; retried with exponential backoff while
the receiver answers non-2xx or cannot be reached; or, after `TASK_MAX_RETRIES` retries (at once for
an address the SSRF rules refuse, or a missing secret), dead-lettered, where `stt-router dlq list`
shows it and `dlq replay` sends it again. Idempotent by the event id: a lease keeps two deliveries
of one event from posting at once, and `transcripts/<id>/webhooks/<event_id>.json`, written after
a 2xx, makes every later delivery (a duplicate message, a replay) a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from pydantic import ValidationError

from tasks.celery_app import WEBHOOK_TASK, app
from tasks.delivery import Delivery, RetryLater, retried_by
from transcription import storage, webhooks
from transcription.events import SessionEvent, webhook_record_key
from transcription.settings import Settings, get_settings
from transcription.transcript import utcnow

log = logging.getLogger(__name__)


@app.task(bind=True, name=WEBHOOK_TASK, max_retries=None)
def send_webhook(self: Task, event: Any, url: str | None = None, attempt: int = 1,
                 lease_waits: int = 0) -> dict[str, Any]:
    with retried_by(self, f"webhook_retry event={event.get('event_id') if isinstance(event, dict) else '?'}"):
        return run_webhook(event, url=url, attempt=attempt, lease_waits=lease_waits, task_id=self.request.id)


def run_webhook(event: Any, *, url: str | None = None, attempt: int = 1, lease_waits: int = 0,
                task_id: str | None = None, settings: Settings | None = None, celery: Any = None) -> dict[str, Any]:
    """The task's logic, callable without a worker; raises `RetryLater` to be queued again. `url`:
    the session manifest's `webhook_url` (default `WEBHOOK_URL`)."""
    s = settings or get_settings()
    try:
        ev = SessionEvent.model_validate(event)
    except ValidationError as e:
        log.error("webhook_refused: not a session event (%d errors)", e.error_count())
        return {"status": "invalid"}
    delivery = Delivery(WEBHOOK_TASK, [event], {"url": url} if url else {}, attempt=attempt,
                        lease_waits=lease_waits, task_id=task_id, settings=s, celery=celery or app)
    record = webhook_record_key(ev.session_id, ev.event_id)
    try:
        with delivery.leases([f"webhook:{ev.event_id}"]) as claim:
            if claim.busy:
                delivery.wait_for_holders(claim, "another delivery of this webhook is posting it")
                return {"status": "left_to_lease_holder", "event_id": ev.event_id}
            if storage.exists(ev.bucket, record, settings=s):
                return {"status": "already_sent", "event_id": ev.event_id}
            status = webhooks.post_event(ev.event_id, ev.model_dump_json().encode(), url=url, settings=s)
            storage.put_json(ev.bucket, record, {"event_id": ev.event_id, "status": status,
                                                 "sent_at": utcnow().isoformat(), "attempts": attempt}, settings=s)
            log.info("webhook_sent event_id=%s session=%s status=%d attempt=%d", ev.event_id, ev.session_id,
                     status, attempt)
            return {"status": "sent", "event_id": ev.event_id, "http_status": status}
    except RetryLater:
        raise
    except Exception as e:  # a refused address fails at once; a non-2xx or an unreachable receiver is retried
        failure = delivery.failure(e)
    log.error("webhook_failed event_id=%s error=%s reason=%s", ev.event_id, failure.error, failure.reason)
    delivery.dead_letter(failure)
    return {"status": "failed", "event_id": ev.event_id, **failure.as_dict()}
