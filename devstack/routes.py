"""Route decisions as Prometheus metrics, locally.

In AWS the router's decision lines are CloudWatch Embedded Metric Format (`router_lambda/emf.py`),
counted by CloudWatch itself. `router-local` prints the same lines; this collector reads them from
its log at scrape time and serves them in Prometheus form, so the local stack shows route decisions
next to the server's and the worker's metrics:

- `stt_router_decisions_total{decision}`: records routed, by decision (direct, queued, skipped, ...)
- `stt_router_decision_seconds{decision}`: time to decide (a summary: `_sum` and `_count`)
- `stt_router_direct_attempts_total{decision}`: calls to the server's /transcribe-s3
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, SummaryMetricFamily

from router_lambda.emf import decision_lines


def tally(text: str) -> dict[str, dict[str, float]]:
    """{decision: {"records", "seconds", "attempts"}} from the router's log text."""
    out: dict[str, dict[str, float]] = {}
    for obj in decision_lines(text):
        t = out.setdefault(obj["decision"], {"records": 0.0, "seconds": 0.0, "attempts": 0.0})
        t["records"] += float(obj.get("Records", 1))
        t["seconds"] += float(obj.get("DecisionMs", 0)) / 1000
        t["attempts"] += float(obj.get("DirectAttempts", 0))
    return out


class RouteCollector:
    """A prometheus_client collector recomputed from the log on every scrape (stateless)."""

    def __init__(self, read_log: Callable[[], str]) -> None:
        self.read_log = read_log

    def collect(self) -> Iterator[Any]:
        counts = tally(self.read_log())
        records = CounterMetricFamily("stt_router_decisions", "records routed, by decision", labels=["decision"])
        seconds = SummaryMetricFamily("stt_router_decision_seconds", "time to decide, by decision",
                                      labels=["decision"])
        attempts = CounterMetricFamily("stt_router_direct_attempts", "calls to the server's /transcribe-s3",
                                       labels=["decision"])
        for decision, t in sorted(counts.items()):
            records.add_metric([decision], t["records"])
            seconds.add_metric([decision], round(t["records"]), t["seconds"])
            attempts.add_metric([decision], t["attempts"])
        yield records
        yield seconds
        yield attempts


def serve(read_log: Callable[[], str], port: int, host: str = "127.0.0.1") -> Any:
    """Serve the route metrics from this process; returns the server (call `.shutdown()`)."""
    registry = CollectorRegistry()
    registry.register(RouteCollector(read_log))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
