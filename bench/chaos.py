"""The fault-injection run: the whole system on real processes, six faults, and what came out.

    python -m bench.chaos [--sessions 20] [--chunks-per-session 10] [--drain-sessions 5] ...

Drives moto's S3/SQS/EventBridge server, a private Redis, the API server behind a fault proxy, a
GPU worker, beat and the router on S3's own events with 200 chunks of generated speech in 20
sessions with manifests (by default), and injects:

1. the direct path fails: 30% of `POST /transcribe-s3` answered 5xx, 10% stalled past the router's
   timeout (then forwarded late); every chunk must end transcribed with at most 3 direct attempts
   per routing decision before it is queued;
2. the worker's whole process group SIGKILLed twice mid-chunk: the killed chunks come back;
3. Redis killed and restarted 3 times (no persistence): the workers resume, nothing is lost;
4. every event delivered twice: one transcript per chunk, refused duplicate writes counted;
5. 5 corrupt chunks: a failed record and a dead letter each, no retries, listed by
   `stt-router dlq list`; and a chunk that kills its worker process every time (a documented fake:
   `bench/chaos_hooks/sitecustomize.py`) dead-lettered after maxReceiveCount receives;
6. 5 backlog sessions through the drain's chords with 10% of their members failing once (S3
   errors): every session combined exactly once, chunks in order;
7. recorders' mistakes (issue 14): a chunk uploaded again 0.2 s later with other speech (the later
   audio's transcript must stay), a zero-byte chunk (failed with its reason), a manifest saying
   `total_chunks: 0` (reported, then corrected) and one with an invalid language (dropped, listed);
8. a failed send (issue 14, hole 5): the router's invocation on a session's completing manifest
   event runs with its broker at a closed port (the combine's send raises, the invocation fails),
   then the event is routed again with the right settings and must queue the combine at once.

Prints a table and writes `bench/results/chaos.json`: `sent`, `transcribed`, `failed` (each with
its reason), `lost`, `duplicate_outputs`, `sessions_expected`, `sessions_combined`,
`worst_latency_s` (upload to transcript), the per-fault figures under `faults`, and `ok` with the
promise's checks (`checks`). Exit code 1 if a check failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bench.common import print_table, write_result


def report(r: dict[str, Any]) -> None:
    f = r["faults"]
    d = f["direct_path"]
    dup = f["duplicate_events"]
    print_table("chaos run: chunks and sessions", ["sent", "transcribed", "failed", "lost", "duplicate outputs",
                                                   "sessions", "combined", "combined once", "worst latency s",
                                                   "wall s"],
                [[r["sent"], r["transcribed"], len(r["failed"]), r["lost"], r["duplicate_outputs"],
                  r["sessions_expected"], r["sessions_combined"], r["sessions_combined_once"], r["worst_latency_s"],
                  r["wall_time_s"]]])
    print_table("latency to the chunk's transcript (s)", ["path", "from", "chunks", "p50", "p95", "max"],
                [[p, v["from"], v["chunks"], v["p50"], v["p95"], v["max"]] for p, v in r["latency_s"].items()])
    rows = [
        ["1 direct path", f"{d['proxy']['requests']} POSTs: {d['proxy']['injected_5xx']} 5xx, "
         f"{d['proxy']['stalled_past_timeout']} stalled", f"direct {d['direct']}, queued after 3 attempts "
         f"{d['queued_after_3_failed_attempts']}, queued (not ready) {d['queued_server_not_ready']}; "
         f"max attempts {d['max_direct_attempts']}"],
    ]
    for k in f["worker_kills"]:
        rows.append(["2 worker SIGKILL", k["key"], f"transcribed {k['transcribed_after_s']} s after the kill; message "
                     f"delivered again: {'/'.join(k['redelivered_as']) or 'no'} (started {k['starts']} times)"])
    for n, o in enumerate(f["redis_restarts"]["outages"], 1):
        rows.append(["3 Redis kill", f"#{n} down {o['down_s']} s", f"worker tasks after: {o['worker_tasks_after']}, "
                     f"first after {o['first_task_after_s']} s"])
    rows.append(["4 events twice", f"{dup['chunk_events_routed']} events for {dup['live_chunks']} chunks",
                 f"skipped (exists) {dup['skipped_transcript_exists']}, refused writes {dup['duplicate_write_refused']}"
                 f" chunk + {dup['session_write_refused']} session, {dup['chunks_run_more_than_once']} chunks run "
                 "twice"])
    for c in f["bad_input"]["corrupt"]:
        rows.append(["5 corrupt", c["key"], f"{c['error']}: {str(c['reason'])[:60]}; dead letters "
                     f"{len(c['dead_letters'])}, retries {c['task_retries']}"])
    p = f["bad_input"]["poison"]
    if p:
        rows.append(["5 poison", p["key"], f"{p['error']} after {p['deliveries']} deliveries; dead letters "
                     f"{[x['kind'] for x in p['dead_letters']]}"])
    ch = f["chords"]
    rows.append(["6 chords", f"{ch['sessions']} sessions, {len(ch['failing_once'])} members failing once",
                 f"combined once {ch['combined_once']}, in order {ch['in_order']}, retries "
                 f"{[x['task_retries'] for x in ch['failing_once']]}"])
    m = f["mistakes"]
    for x in m["reuploads"]:
        rows.append(["7 re-upload", x["key"], f"{x['uploads']} uploads 0.2 s apart; transcript of the later audio: "
                     f"{x['later_audio_won']} (WER {x.get('wer_later')})"])
    for x in m["zero_byte"]:
        rows.append(["7 zero-byte", x["key"], f"failed record: {x['failed_record']} ({x['reason']})"])
    for what, x in m["manifests"].items():
        rows.append([f"7 manifest {what}", x["session"],
                     f"reported {x['reported']}, combined once {x['combined_once']}"])
    for x in f["failed_sends"]["sends"]:
        rows.append(["8 failed send", x["key"], f"invocation on a dead broker: {x['first_decision']} (exit failed: "
                     f"{x['invocation_failed']}); retried event queued the combine: {x['retry_combine_queued']}"
                     f"{'' if x['swept_after_s'] is None else ', swept ' + str(x['swept_after_s']) + ' s after'}; "
                     f"combined once {x['combined_once']}"])
    print_table("faults", ["fault", "what", "outcome"], rows)
    print_table("checks", ["check", "ok"], [[k, v] for k, v in r["checks"].items()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--chunks-per-session", type=int, default=10)
    parser.add_argument("--drain-sessions", type=int, default=5, help="of --sessions: a backlog for the drain")
    parser.add_argument("--corrupt", type=int, default=5)
    parser.add_argument("--no-poison", action="store_true")
    parser.add_argument("--worker-kills", type=int, default=2)
    parser.add_argument("--redis-kills", type=int, default=3)
    parser.add_argument("--upload-interval", type=float, default=3.0, help="seconds between live chunk uploads")
    parser.add_argument("--router-timeout", type=float, default=20.0, help="ROUTER_REQUEST_TIMEOUT_S")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this long")
    parser.add_argument("--boundary-repair", action="store_true", help="combine with BOUNDARY_REPAIR=true")
    parser.add_argument("--reuploads", type=int, default=1, help="live chunks uploaded again 0.2 s later")
    parser.add_argument("--zero-byte", type=int, default=1, help="live chunks uploaded with no bytes")
    parser.add_argument("--no-manifest-mistakes", action="store_true")
    parser.add_argument("--failed-sends", type=int, default=2,
                        help="sessions whose completing router invocation first meets a dead broker")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--output", default="chaos", help="result name under bench/results/")
    args = parser.parse_args()

    os.environ.setdefault("MODEL_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "models"))
    from bench.chaos_run import Plan, checks, run

    plan = Plan(sessions=args.sessions, chunks_per_session=args.chunks_per_session,
                drain_sessions=args.drain_sessions, corrupt=args.corrupt, poison=not args.no_poison,
                worker_kills=args.worker_kills, redis_kills=args.redis_kills,
                upload_interval_s=args.upload_interval, router_timeout_s=args.router_timeout,
                timeout_s=args.timeout, boundary_repair=args.boundary_repair, seed=args.seed,
                reuploads=args.reuploads, zero_byte=args.zero_byte, manifest_mistakes=not args.no_manifest_mistakes,
                failed_sends=args.failed_sends)
    result = run(plan)
    result["checks"] = checks(result)
    result["ok"] = all(result["checks"].values())
    report(result)
    write_result(args.output, result)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
