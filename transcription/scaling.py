"""The queue-depth scaling rule: how many GPU workers the queue asks for right now.

One pure function, called every minute by the beat task that sets the Auto Scaling group's
desired capacity and by the cost simulator (`bench/cost.py`), so the simulated policy is the
real one. It lets capacity fall to 0 when the queue is empty: a GPU costs nothing then.
"""

from __future__ import annotations

from collections.abc import Mapping

# SQS GetQueueAttributes names for the two counts the rule reads.
VISIBLE_ATTRIBUTE = "ApproximateNumberOfMessages"
IN_FLIGHT_ATTRIBUTE = "ApproximateNumberOfMessagesNotVisible"
QUEUE_ATTRIBUTES = (VISIBLE_ATTRIBUTE, IN_FLIGHT_ATTRIBUTE)


def _count(name: str, value: object, minimum: int = 0) -> int:
    # bool is an int subclass; True workers is a bug, not a count
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def desired_workers(visible: int, in_flight: int, maximum: int, chunks_per_worker: int = 1) -> int:
    """Workers wanted for `visible` waiting and `in_flight` running messages, capped at `maximum`.

    ceil((visible + in_flight) / chunks_per_worker), at most `maximum`; 0 when both counts are 0.
    In-flight messages count so that scaling in never asks for fewer workers than are busy
    (with chunks_per_worker=1). Negative or non-integer inputs raise instead of guessing.
    """
    backlog = _count("visible", visible) + _count("in_flight", in_flight)
    maximum = _count("maximum", maximum)
    per_worker = _count("chunks_per_worker", chunks_per_worker, minimum=1)
    return min(-(-backlog // per_worker), maximum)


def queue_depth(attributes: Mapping[str, object]) -> tuple[int, int]:
    """(visible, in_flight) from an SQS GetQueueAttributes `Attributes` map (values are strings)."""
    counts = []
    for name in QUEUE_ATTRIBUTES:
        raw = attributes.get(name)
        try:
            value = int(str(raw))
        except ValueError:
            raise ValueError(f"queue attribute {name} is not a count: {raw!r}") from None
        counts.append(_count(name, value))
    return counts[0], counts[1]
