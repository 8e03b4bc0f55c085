"""Cost simulator: a day of uploads through each capacity policy; GPU hours, dollars, latency.

    python -m bench.cost [--sessions 300] [--seed 1] [--chunk-s 30] [--gpu-hourly-usd 0.526] ...
    python -m bench.cost --measured-speed [--gpu-speedup 3.3]   # speed from bench/results/engine.json
    python -m bench.cost --help                                  # every parameter of the model

Policies side by side on the same seeded day: GPU always on; queue only with the midnight drain;
the hybrid router with idle shutdown; hybrid with queue-depth scaling; queue only with
queue-depth scaling; and AWS Transcribe as the managed comparison (dollars only). Then the
sensitivity runs (spot, 5 s and 5 min chunks, a 300 s cold start, an A10G, one queue-depth
worker per 100 chunks). Writes bench/results/cost.json and bench/results/cost.png.
The model itself is in bench/cost_model.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from bench import common
from bench.cost_model import INSTANCES, POLICIES, PROFILES, CostParams, Report, Workload, make_sessions, run

DESIGN_SPEED_SOURCE = "design default: Whisper large-v3 batched on a T4 (25x real time)"

# name -> (what changes, CostParams overrides); the T4 speed and price scale with the instance.
SENSITIVITY: dict[str, tuple[str, dict[str, object]]] = {
    "spot": ("spot price, about 0.4x on demand", {"price_factor": 0.4}),
    "chunk-5s": ("5 s chunks (Amazon Chime SDK media capture)", {"chunk_s": 5.0}),
    "chunk-300s": ("5 min recorder segments", {"chunk_s": 300.0}),
    "cold-start-300s": ("300 s cold start (a ~10 GB image pulled at boot)", {"cold_start_s": 300.0}),
    "g5.xlarge": ("A10G: $1.006/h, about 2x a T4", {"instance": "g5.xlarge"}),
    "chunks-per-worker-1": ("queue-depth: one worker per waiting chunk", {"chunks_per_worker": 1}),
}

HELP = {
    "gpu_hourly_usd": "GPU instance on-demand $/h (g4dn.xlarge, us-east-1)",
    "price_factor": "multiplier on the GPU price (spot: about 0.4)",
    "billing_minimum_s": "minimum billed seconds per instance start",
    "cold_start_s": "instance start to first transcript, billed in full",
    "gpu_speed_x": "GPU engine speed on a T4, x real time (see --measured-speed)",
    "chunk_overhead_s": "fixed GPU seconds per chunk on top of audio / speed",
    "lambda_ms": "router Lambda duration per chunk (probe and publish or call)",
    "lambda_cold_ms": "extra duration of a cold Lambda start",
    "lambda_memory_mb": "router Lambda memory (GB-seconds are billed)",
    "lambda_usd_per_million": "Lambda $ per million requests",
    "lambda_usd_per_gb_s": "Lambda $ per GB-second",
    "lambda_idle_s": "an idle router Lambda container is recycled after this long",
    "probe_timeout_s": "the router's health probe of a server that is down",
    "sqs_usd_per_million": "SQS $ per million requests",
    "sqs_requests_per_chunk": "SQS requests per queued chunk (send, receive, delete)",
    "sqs_poll_interval_s": "an idle consumer's long poll period (kombu defaults: ~11 s)",
    "transcribe_usd_per_min": "AWS Transcribe batch $ per audio minute",
    "transcribe_minimum_s": "AWS Transcribe minimum billed seconds per request (one chunk)",
    "chunk_s": "chunk length in seconds",
    "drain_hour": "hour of the nightly drain (DRAIN_HOUR)",
    "always_on_gpus": "GPUs of the always-on policy",
    "scaling_interval_s": "queue-depth scaler period",
    "max_workers": "cap of the worker count (MAX_GPU_WORKERS)",
    "chunks_per_worker": "queue-depth rule: waiting chunks per worker",
    "scale_in_ticks": "scale in only after this many ticks asking for fewer workers",
    "server_start_hour": "hybrid: the server is ready at this hour (started cold-start earlier)",
    "server_idle_timeout_s": "hybrid: the server box stops after this long without work",
    "worker_idle_timeout_s": "drain workers stop after this long with an empty queue",
    "server_consumes_queue": "the server box also runs a worker that takes queued chunks",
    "sessions": "sessions in the day",
    "seed": "random seed of the day (same seed, same day)",
    "burst_spread_s": "how soon after the top of the hour a burst session starts",
    "backfill_gap_s": "seconds between a backfilled session's uploads",
    "session_sigma": "log-normal sigma of session length",
    "session_min_min": "shortest session, minutes",
    "session_max_min": "longest session, minutes",
    "burst_share": "share of sessions starting within --burst-spread-s after the top of the hour",
    "backfill_share": "share of sessions uploaded all at once when they end (offline recorder)",
    "session_median_min": "median session length (log-normal)",
}


def _add_fields(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "profile":
            group.add_argument(flag, default="office",
                               help=f"hourly session-start weights: {', '.join(PROFILES)}, or 24 weights")
        elif isinstance(f.default, bool):
            group.add_argument(flag, default=f.default, action=argparse.BooleanOptionalAction, help=HELP.get(f.name))
        else:
            group.add_argument(flag, type=type(f.default), default=f.default, help=HELP.get(f.name, ""))


def parse_profile(value: str) -> tuple[float, ...]:
    if value in PROFILES:
        return PROFILES[value]
    try:
        weights = tuple(float(x) for x in value.split(","))
    except ValueError:
        raise SystemExit(f"--profile: {value!r} is neither {' nor '.join(PROFILES)} nor 24 numbers") from None
    if len(weights) != 24:
        raise SystemExit(f"--profile: need 24 hourly weights, got {len(weights)}")
    return weights


def engine_speed(args: argparse.Namespace, results_dir: Path) -> tuple[float, str]:
    """The T4 speed: the design's figure, or this machine's measured CPU speed times a GPU factor."""
    if not args.measured_speed:
        if args.gpu_speed_x != CostParams.gpu_speed_x:
            return args.gpu_speed_x, f"--gpu-speed-x {args.gpu_speed_x:g}"
        return args.gpu_speed_x, DESIGN_SPEED_SOURCE
    path = results_dir / "engine.json"
    try:
        engines = json.loads(path.read_text())["engines"]
    except (OSError, ValueError, KeyError):
        print(f"note: {path} missing or unreadable; using the design's speed", file=sys.stderr)
        return CostParams.gpu_speed_x, DESIGN_SPEED_SOURCE + f" ({path.name} not found)"
    name = args.measured_engine if args.measured_engine in engines else max(engines, key=lambda k: engines[k]["rtf_x"])
    rtf = float(engines[name]["rtf_x"])
    return rtf * args.gpu_speedup, (f"measured: {name} {rtf:g}x on this machine's CPU "
                                    f"x {args.gpu_speedup:g} GPU speed-up ({path.name})")


def build(args: argparse.Namespace, results_dir: Path) -> tuple[CostParams, Workload, dict[str, object]]:
    speed, source = engine_speed(args, results_dir)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(CostParams)}
    values["gpu_speed_x"] = speed
    price, factor = INSTANCES[args.instance]
    if args.instance != "g4dn.xlarge":
        values["gpu_hourly_usd"], values["gpu_speed_x"] = price, speed * factor
        source += f"; x{factor:g} for {args.instance}"
    w = {f.name: getattr(args, f.name) for f in dataclasses.fields(Workload)}
    w["profile"] = parse_profile(args.profile)
    try:
        return CostParams(**values), Workload(**w), {"x": round(values["gpu_speed_x"], 3), "source": source}
    except ValueError as e:
        raise SystemExit(f"bad parameter: {e}") from None


def sensitivity_params(base: CostParams, base_instance: str, changes: dict[str, object]) -> CostParams:
    changes = dict(changes)
    instance = changes.pop("instance", None)
    if instance:
        price, factor = INSTANCES[instance]
        t4_speed = base.gpu_speed_x / INSTANCES[base_instance][1]
        changes.update(gpu_hourly_usd=price, gpu_speed_x=t4_speed * factor)
    return dataclasses.replace(base, **changes)


def fmt_s(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_report(data: dict, title: str) -> None:
    rows = [[name, f"{p['gpu_hours']:.2f}", f"{p['usd']:.2f}", f"{p['usd_gpu']:.2f}", f"{p['usd_lambda']:.3f}",
             f"{p['usd_sqs']:.3f}", fmt_s(p["latency_p50_s"]), fmt_s(p["latency_p95_s"]), fmt_s(p["latency_max_s"]),
             f"{100 * p['direct_share']:.0f}%", p["gpu_starts"]] for name, p in data["policies"].items()]
    t = data["managed"]["aws-transcribe"]
    rows.append(["aws-transcribe", "-", f"{t['usd']:.2f}", "-", f"{t['usd_lambda']:.3f}", "-", "-", "-", "-", "-", "-"])
    rows.append(["physical minimum", f"{data['minimum_gpu_hours']:.2f}", f"{data['minimum_usd']:.2f}",
                 "", "", "", "", "", "", "", ""])
    common.print_table(title, ["policy", "GPU h", "$/day", "GPU $", "Lambda $", "SQS $", "p50", "p95", "max",
                               "direct", "starts"], rows)


def print_sensitivity(out: dict) -> None:
    names = list(out["policies"])
    rows = [["(base)", *[f"${p['usd']:.2f} / {fmt_s(p['latency_p95_s'])}" for p in out["policies"].values()],
             f"${out['managed']['aws-transcribe']['usd']:.0f}"]]
    for case, s in out["sensitivity"].items():
        rows.append([case, *[f"${s['policies'][n]['usd']:.2f} / {fmt_s(s['policies'][n]['latency_p95_s'])}"
                             for n in names], f"${s['managed']['aws-transcribe']['usd']:.0f}"])
    common.print_table("sensitivity: $/day / p95 latency per policy", ["case", *names, "aws-transcribe"], rows)


def plot(out: dict, path: Path) -> None:
    """Latency against dollars per day, one point per policy (p50 marker, bar to p95, line to max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 7), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    spot = out.get("sensitivity", {}).get("spot")
    for n, (name, p) in enumerate(out["policies"].items()):
        c = colors[n % len(colors)]
        x = p["usd"]
        ax.vlines(x, p["latency_p95_s"], p["latency_max_s"], color=c, lw=1, alpha=0.6)
        ax.vlines(x, p["latency_p50_s"], p["latency_p95_s"], color=c, lw=5, alpha=0.45)
        ax.plot([x], [p["latency_p50_s"]], "o", color=c, ms=9, zorder=4,
                label=f"{name}: {p['gpu_hours']:.1f} GPU h, ${x:.2f}")
        ax.plot([x], [p["latency_max_s"]], "_", color=c, ms=12, mew=2)
        ax.annotate(name, (x, p["latency_p50_s"]), textcoords="offset points", xytext=(8, -4), fontsize=9, color=c,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.75, "pad": 0.5}, zorder=3)
        if spot:
            s = spot["policies"][name]
            ax.plot([s["usd"]], [s["latency_p50_s"]], "o", mfc="none", color=c, ms=9)
    ax.axvline(out["minimum_usd"], color="grey", ls=":", lw=1.5)
    minimum = f" physical minimum (on demand)\n {out['minimum_gpu_hours']:.1f} GPU h, ${out['minimum_usd']:.2f}"
    ax.text(out["minimum_usd"], 0.02, minimum, transform=ax.get_xaxis_transform(), va="bottom", fontsize=8,
            color="dimgrey")
    t = out["managed"]["aws-transcribe"]["usd"]
    ax.axvline(t, color="black", ls="--", lw=1)
    ax.text(t, 0.98, f"AWS Transcribe ${t:.0f}/day \n(latency not modelled) ", transform=ax.get_xaxis_transform(),
            ha="right", va="top", fontsize=8)
    for y, label in ((60, "1 min"), (3600, "1 h"), (86400, "1 day")):
        ax.axhline(y, color="lightgrey", lw=0.8, zorder=0)
        ax.text(1.0, y, f" {label}", transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    cheapest = min([out["minimum_usd"], *(s["usd"] for s in (spot or {"policies": {}})["policies"].values())])
    ax.set_xlim(cheapest * 0.7, t * 1.6)
    lowest = min(p["latency_p50_s"] for p in out["policies"].values())
    ax.set_ylim(lowest / 4, 86400 * 3)
    ax.set_xlabel("dollars per day (GPU + Lambda + SQS), log scale")
    ax.set_ylabel("chunk latency, upload to transcript (s), log scale")
    ax.set_title(f"{out['sessions']} sessions, {out['audio_hours']:.0f} audio hours, {out['chunks']} chunks of "
                 f"{out['parameters']['chunk_s']:g} s; GPU {out['engine_speed']['x']:g}x at "
                 f"${out['parameters']['gpu_hourly_usd']:g}/h", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="grey", lw=5, alpha=0.45))
    labels.append("dot p50, bar to p95, tick at max")
    if spot:
        handles.append(plt.Line2D([], [], marker="o", mfc="none", color="grey", ls=""))
        labels.append("hollow: the same policy on spot (0.4x)")
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--instance", choices=list(INSTANCES), default="g4dn.xlarge",
                        help="GPU instance: sets the price and scales the T4 speed")
    parser.add_argument("--measured-speed", action="store_true",
                        help="engine speed = real-time factor in bench/results/engine.json x --gpu-speedup")
    parser.add_argument("--measured-engine", default="whisperx", help="which engine's measured speed to use")
    parser.add_argument("--gpu-speedup", type=float, default=3.3,
                        help="T4 speed over this machine's CPU (25x / ~7.5x measured for Whisper base int8)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset of the policies")
    parser.add_argument("--sensitivity", default=True, action=argparse.BooleanOptionalAction,
                        help="also run " + ", ".join(SENSITIVITY))
    parser.add_argument("--plot", default=True, action=argparse.BooleanOptionalAction, help="write cost.png")
    _add_fields(parser, CostParams, "model parameters")
    _add_fields(parser, Workload, "the day of uploads")
    args = parser.parse_args(argv)

    results_dir = common.RESULTS
    params, workload, speed = build(args, results_dir)
    policies = tuple(p for p in args.policies.split(",") if p)
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies: {', '.join(sorted(unknown))}")

    started = time.perf_counter()
    sessions = make_sessions(workload)
    report: Report = run(params, sessions, workload, policies)
    out = {**report.to_json(), "sessions": workload.sessions, "engine_speed": speed,
           "parameters": {**dataclasses.asdict(params), "instance": args.instance},
           "workload": {**dataclasses.asdict(workload), "profile": list(workload.profile)}}
    sensitivity: dict[str, object] = {}
    if args.sensitivity:
        for case, (what, changes) in SENSITIVITY.items():
            case_params = sensitivity_params(params, args.instance, changes)
            case_report = run(case_params, sessions, workload, policies)
            sensitivity[case] = {"what": what, "changes": changes, **case_report.to_json()}
    out["sensitivity"] = sensitivity
    out["run_s"] = round(time.perf_counter() - started, 2)

    print(f"engine speed {speed['x']:g}x ({speed['source']})")
    print_report(out, f"one day: {workload.sessions} sessions, {out['audio_hours']:.1f} audio hours, {out['chunks']} "
                      f"chunks of {params.chunk_s:g} s, seed {workload.seed}")
    if sensitivity:
        print_sensitivity(out)
    print(f"\nsimulated in {out['run_s']:.1f} s")
    common.write_result("cost", out)
    if args.plot:
        plot(out, results_dir / "cost.png")
    return out


if __name__ == "__main__":
    main()
