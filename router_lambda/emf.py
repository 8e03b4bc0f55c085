"""CloudWatch Embedded Metric Format: the decision log line is also the metric.

A Lambda's stdout goes to CloudWatch Logs; a line that is a JSON object with an `_aws` member is
turned into metrics there, with no API call and no extra latency. So each routing decision is one
JSON line that a person can read, `filter`/Logs Insights can query, and CloudWatch counts:
`Records` and `DecisionMs` per `decision` (direct, queued, skipped, failed, manifest, error) in the
`STTRouter` namespace, plus `DirectAttempts` where the server was called.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

NAMESPACE = "STTRouter"
DIMENSION = "decision"

# metric name -> CloudWatch unit
UNITS = {"Records": "Count", "DecisionMs": "Milliseconds", "DirectAttempts": "Count"}
_write_lock = threading.Lock()  # whole lines, also when `router-local` runs invocations in threads


def emf_record(properties: dict[str, Any], metrics: dict[str, float], *, timestamp_ms: int | None = None,
               namespace: str = NAMESPACE) -> dict[str, Any]:
    """One EMF object: `properties` (which must hold the `decision` dimension) plus numeric `metrics`."""
    if not isinstance(properties.get(DIMENSION), str):
        raise ValueError(f"an EMF record needs a string {DIMENSION!r} dimension")
    unknown = set(metrics) - set(UNITS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}")
    return {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[DIMENSION]],
                "Metrics": [{"Name": name, "Unit": UNITS[name]} for name in metrics],
            }],
        },
        **properties,
        **{name: float(value) for name, value in metrics.items()},
    }


def emit(record: dict[str, Any], stream: TextIO | None = None) -> str:
    """Write the record as one JSON line (stdout by default, which Lambda sends to CloudWatch)."""
    line = json.dumps(record, separators=(",", ":"), default=str)
    out = stream or sys.stdout
    with _write_lock:
        out.write(line + "\n")
        out.flush()
    return line


def decision_lines(text: str) -> Iterator[dict[str, Any]]:
    """The decision records in a log written by `emit` (other lines are skipped)."""
    for line in text.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get(DIMENSION), str):
            yield obj
