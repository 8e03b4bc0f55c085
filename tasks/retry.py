"""When a task tries again: exponential backoff with a cap, never past the visibility timeout.

The timing policy `tasks.delivery.Delivery` applies; kept apart so it can be read (and tested) alone.
"""

from __future__ import annotations

import random

from transcription.settings import Settings

MAX_LEASE_WAITS = 40  # a second delivery waits this many times for the lease holder, then leaves it to it


def backoff_s(attempt: int, settings: Settings) -> float:
    """Wait before attempt `attempt + 1`: base * 2^(attempt-1), capped, with full jitter on the top half.

    Held under the visibility timeout: a retried message waits in the worker (as an ETA task),
    and SQS would hand it to another worker if it waited longer.
    """
    wait = min(settings.task_retry_backoff_max_s, settings.task_retry_backoff_s * 2 ** max(0, attempt - 1))
    wait = wait / 2 + random.uniform(0, wait / 2)
    return round(max(0.5, min(wait, settings.visibility_timeout_s / 2)), 2)


def lease_wait_s(remaining_s: float, settings: Settings) -> float:
    """Wait for a lease held by another delivery: until it could lapse, but re-check at least every 30 s."""
    return round(max(1.0, min(remaining_s + 0.5, 30.0, settings.visibility_timeout_s / 2)), 2)
