"""What the worker's main process does when a pool process dies holding a chunk.

The pool process cannot clean up after a SIGKILL, an out-of-memory kill or a hard time limit, so
the main process does: it drops the chunk's lease (the requeued message can start at once instead
of waiting for the lease to lapse) and notes why it died, which the chunk's failed record quotes
if it keeps dying. The message itself comes back through `task_reject_on_worker_lost`.
"""

from __future__ import annotations

import logging

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.worker.request import Request

from tasks import locks

log = logging.getLogger(__name__)


class ChunkRequest(Request):
    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            self._died(f"hard time limit of {timeout:.0f} s exceeded")
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, WorkerLostError):
            self._died(f"worker process lost: {exc}")
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def _died(self, reason: str) -> None:
        try:
            bucket, key = self.args[0], self.args[1]
        except (IndexError, TypeError):
            return
        name = locks.chunk_name(str(bucket), str(key))
        log.warning("chunk_died key=%s reason=%s", key, reason)
        locks.force_release(name)
        locks.note_death(name, reason)
