"""CHUNKS_PER_WORKER: what the queue-depth rule costs and how long chunks wait, per setting.

    python -m bench.chunks_per_worker [--values 1,10,25,50,100,200,400] [--cold-starts 120,300]

The same seeded day of uploads as `bench/cost.py` (its model, `bench/cost_model.py`, which calls
`transcription.scaling.desired_workers` like beat's scaler and the drain), through the two
queue-depth policies for each value, side by side in one run, at the design's 120 s cold start and
at 300 s (an image pulled at boot). Writes bench/results/chunks_per_worker.json. Pure Python.
"""

from __future__ import annotations

import argparse
import time

from bench import common
from bench.cost_model import CostParams, Workload, make_sessions, run

POLICIES = ("queue-depth", "hybrid-queue-depth", "queue-midnight")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default="1,10,25,50,100,200,400", help="CHUNKS_PER_WORKER values")
    parser.add_argument("--cold-starts", default="120,300", help="cold start seconds to run each value at")
    args = parser.parse_args(argv)
    values = [int(v) for v in args.values.split(",")]
    colds = [float(c) for c in args.cold_starts.split(",")]

    started = time.perf_counter()
    workload = Workload()
    sessions = make_sessions(workload)
    rows, runs = [], []
    for cold in colds:
        for per in values:
            params = CostParams(chunks_per_worker=per, cold_start_s=cold)
            report = run(params, sessions, workload, POLICIES).to_json()
            policies = report["policies"]
            runs.append({"cold_start_s": cold, "chunks_per_worker": per, "policies": policies,
                         "minimum_usd": report["minimum_usd"], "chunks": report["chunks"]})
            for name in POLICIES[:2]:
                p = policies[name]
                rows.append([f"{cold:g} s", per, name, round(p["usd"], 2), p["gpu_starts"],
                             round(p["latency_p50_s"], 1), round(p["latency_p95_s"], 1)])
    common.print_table(f"queue-depth rule per CHUNKS_PER_WORKER (one day, {runs[0]['chunks']} chunks of 30 s, "
                       f"physical minimum ${runs[0]['minimum_usd']:.2f})",
                       ["cold start", "chunks/worker", "policy", "$/day", "GPU starts", "p50 s", "p95 s"], rows)
    out = {"values": values, "cold_starts_s": colds, "runs": runs, "sessions": workload.sessions,
           "seed": workload.seed, "run_s": round(time.perf_counter() - started, 2)}
    common.write_result("chunks_per_worker", out)
    return out


if __name__ == "__main__":
    main()
