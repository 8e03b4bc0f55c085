"""Collect bench/results/*.json into bench/results/README.md: one table per benchmark, and the machine.

    python -m bench.summary

Run last by `make bench`; each section says which command produced it and when.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bench.common import RESULTS


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def engine(d: dict) -> str:
    return table(["engine", "real-time factor (x)", "word error rate", "model load s"],
                 [[k, v["rtf_x"], v["wer"], v.get("load_s", "")] for k, v in d["engines"].items()])


def system(d: dict) -> str:
    rows = []
    for name, r in d["engines"].items():
        rows.append([name, "raw engine", r["raw"]["rtf_x"], 1.0, "", "", r["raw"]["wer"]])
        rows.append([name, "direct (router -> server)", r["direct"]["rtf_x"], r["direct"]["throughput_ratio"],
                     r["direct"]["added_ms_p50"], r["direct"]["added_ms_p95"], r["direct"]["wer"]])
        rows.append([name, "queued (SQS -> worker)", r["queued"]["rtf_x"], r["queued"]["throughput_ratio"], "", "",
                     r["queued"]["wer"]])
    return table(["engine", "path", "real-time factor (x)", "throughput / raw", "added ms p50", "added ms p95",
                  "WER"], rows)


def queued(d: dict) -> str:
    return table(["chunks", "throughput_ratio", "engine_share", "overhead_ms_p50", "overhead_ms_p95"],
                 [[d["chunks"], d["throughput_ratio"], d["engine_share"], d["overhead_ms_p50"],
                   d["overhead_ms_p95"]]])


def server(d: dict) -> str:
    return table(["added_ms_p50", "added_ms_p95", "health_ms_p99_busy"],
                 [[d["added_ms_p50"], d["added_ms_p95"], d["health_ms_p99_busy"]]])


def router(d: dict) -> str:
    return table(["cold_import_ms", "/ boto3's (wall)", "/ boto3's (cpu)", "floor: botocore + settings / boto3's (cpu)",
                  "decision_ms_p50", "decision_ms_p99"],
                 [[d["cold_import_ms"], d.get("cold_import_ratio_boto3", "-"),
                   d.get("cold_import_cpu_ratio_boto3", "-"), d.get("settings_floor_cpu_ratio_boto3", "-"),
                   d["decision_ms_p50"], d["decision_ms_p99"]]])


def cost(d: dict) -> str:
    rows = [[name, p["gpu_hours"], p["usd"], p["latency_p50_s"], p["latency_p95_s"], p.get("latency_max_s", "")]
            for name, p in d["policies"].items()]
    return (table(["policy", "GPU hours", "USD per day", "latency p50 s", "latency p95 s", "latency max s"], rows)
            + f"\n\nPhysical minimum: {d['minimum_gpu_hours']} GPU hours. Plot: `cost.png`.")


def boundaries(d: dict) -> str:
    cuts = {k: v for k, v in d.items() if k.replace(".", "").isdigit()}
    return table(["cut s", "whole WER", "naive WER", "repaired WER", "repaired WER, no context",
                  "repaired WER, windows only", "extra audio %", "extra engine time %"],
                 [[k, v["whole_wer"], v["naive_wer"], v["repaired_wer"], v.get("repaired_nocontext_wer", "-"),
                   v.get("repaired_windows_wer", "-"), v["extra_audio_pct"], v.get("extra_wall_pct", "-")]
                  for k, v in sorted(cuts.items(), key=lambda kv: float(kv[0]))])


def runs(d: dict) -> str:
    return f"{d.get('recording', '')}\n\n" + table(
        ["cut s", "chunks", "whole file engine s", "chunk by chunk / whole",
         "router's way: engine / whole", "throughput / whole", "drain's way: engine / whole", "throughput / whole",
         "WER whole", "WER chunks naive", "WER session"],
        [[k, v["chunks"], v["whole_engine_s"], v["chunked_ratio"],
          v["router"]["engine_ratio"], v["router"]["throughput_ratio"], v["drain"]["engine_ratio"],
          v["drain"]["throughput_ratio"], v["whole_wer"], v["naive_wer"], v["session_wer"]]
         for k, v in sorted(d["cuts"].items(), key=lambda kv: float(kv[0]))])


def chaos(d: dict) -> str:
    return table(["sent", "transcribed", "failed", "lost", "duplicate_outputs", "sessions_expected",
                  "sessions_combined", "worst_latency_s"],
                 [[d["sent"], d["transcribed"], len(d["failed"]) if isinstance(d["failed"], list | dict)
                   else d["failed"], d["lost"], d["duplicate_outputs"], d["sessions_expected"],
                   d["sessions_combined"], d["worst_latency_s"]]])


def chunks_per_worker(d: dict) -> str:
    return "```json\n" + json.dumps({k: v for k, v in d.items() if k != "machine"}, indent=1)[:1500] + "\n```"


SECTIONS: list[tuple[str, str, str, Callable[[dict], str]]] = [
    ("engine", "Engines", "python -m bench.engine", engine),
    ("system", "Full system against the raw engine", "python -m bench.system", system),
    ("queued", "Queued path", "python -m bench.queued", queued),
    ("server", "Server overhead", "python -m bench.server", server),
    ("router", "Router", "python -m bench.router", router),
    ("boundaries", "Boundary repair", "python -m bench.boundaries", boundaries),
    ("runs", "Session runs (a backlog in one engine call)", "python -m bench.runs", runs),
    ("runs_call", "Session runs on speech that never repeats (the call once)",
     "python -m bench.runs --copies 1 --cuts 5,10 --out runs_call", runs),
    ("cost", "Cost model (one simulated day)", "python -m bench.cost", cost),
    ("chunks_per_worker", "Queue-depth scaling: chunks per worker", "python -m bench.chunks_per_worker",
     chunks_per_worker),
    ("chaos", "Fault injection", "python -m bench.chaos", chaos),
]


def main() -> None:
    parts = ["# Benchmark results", "",
             "Written by `python -m bench.summary` (the last step of `make bench`) from the JSON files here.", ""]
    machines = set()
    for name, title, command, render in SECTIONS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            parts += [f"## {title}", "", f"Not run yet: `{command}`.", ""]
            continue
        data = json.loads(path.read_text())
        m = data.get("machine", {})
        machines.add(f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, "
                     f"GPU: {m.get('gpu') or 'none'}, Python {m.get('python')}")
        try:
            body = render(data)
        except (KeyError, TypeError) as e:
            body = f"(could not read {path.name}: {type(e).__name__} {e})"
        parts += [f"## {title}", "", f"`{command}`, {m.get('date', 'date unknown')}", "", body, ""]
    parts[4:4] = ["Machine: " + "; ".join(sorted(machines)), ""]
    out = RESULTS / "README.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
