"""What the worker's main process does when a pool process dies holding leases.

The pool process cannot clean up after a SIGKILL, an out-of-memory kill or a hard time limit, so
the main process does: it drops the leases the delivery held (the requeued message can start at
once instead of waiting for them to lapse) and notes why it died, which the failed record quotes if
it keeps dying (`Delivery.count_start`). The message itself comes back through
`task_reject_on_worker_lost`. A task opts in with `Request="tasks.requests:LeaseRequest"` and
`lease_names`, a function of its arguments giving the names it leases (`tasks.locks`).
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]  # missing from celery-types' stubs
from billiard.exceptions import WorkerLostError
from celery.worker.request import Request

from tasks import locks

log = logging.getLogger(__name__)


class LeaseRequest(Request):
    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            self._died(f"hard time limit of {timeout:.0f} s exceeded")
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, WorkerLostError):
            self._died(f"worker process lost: {exc}")
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def _died(self, reason: str) -> None:
        lease_names = getattr(self.task, "lease_names", None)
        try:
            names = list(lease_names(*self.args, **self.kwargs)) if lease_names else []
        except (TypeError, ValueError, IndexError):  # a malformed message: nothing was leased
            return
        for name in names:
            log.warning("delivery_died lease=%s task=%s reason=%s", name, self.task.name, reason)
            locks.force_release(name)
            locks.note_death(name, reason)
