"""The sessions API's cost: how long a session report and a page of sessions take, by session size.

    python -m bench.sessions_api [--chunks 30,120,480] [--sessions 60] [--repeat 5]

Against moto's S3 in this process (`ThreadedMotoServer`; real HTTP, no network latency: on S3 each
request adds its round trip, so the request counts matter as much as the times):
- `report_ms`: `session_report` of one combined session of N chunks (what `GET /sessions/{id}` and
  `stt-router sessions status` run): three listings, the manifest, a HEAD and the session transcript;
- `report_chunks_ms`: the same with `chunks=true` (one GET per chunk transcript besides);
- `page_ms`: `session_page(limit=50)` over `--sessions` sessions of 30 chunks each (`GET /sessions`);
- `announce_ms`: the completion event of a combined session: the stored transcript read, PutEvents
  on moto's EventBridge, the record written (`transcription.events.announce`).
Medians over `--repeat` runs. Writes bench/results/sessions_api.json (with the machine's load
average at the end: moto answers from one Python process, so a busy machine slows every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from bench.common import print_table, write_result


def timed(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs)


def make_session(bucket: str, sid: str, n: int) -> None:
    from transcription import layout, sessions, storage
    from transcription.transcript import ChunkTranscript, Segment

    storage.put_json(bucket, layout.manifest_key(sid), {"total_chunks": n, "title": "bench"})
    for i in range(n):
        storage.put_bytes(bucket, f"sessions/{sid}/chunks/{i}.wav", b"RIFF")
        t = ChunkTranscript(session_id=sid, chunk_index=i, source_key=f"sessions/{sid}/chunks/{i}.wav", duration=30.0,
                            language="en", engine="faster-whisper", model="base", via="queued",
                            segments=[Segment(start=k * 6.0, end=k * 6.0 + 5.5, text=f"words of segment {k} " * 4)
                                      for k in range(5)])
        storage.put_json(bucket, layout.chunk_transcript_key(sid, i), t.model_dump_json().encode())
    sessions.write_session_transcript(bucket, sessions.build_session_transcript(bucket, sid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", default="30,120,480")
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1", "S3_BUCKET": "bench-sessions",
                       "BOUNDARY_REPAIR": "false", "EVENT_BUS_NAME": "bench-bus"})
    try:
        import boto3

        from transcription import events, storage
        from transcription.session_report import session_page, session_report
        from transcription.settings import get_settings

        get_settings.cache_clear()
        s = get_settings()
        storage.s3_client(s).create_bucket(Bucket=s.s3_bucket)
        boto3.client("events", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1").create_event_bus(
            Name="bench-bus")
        rows, result = [], {}
        for n in (int(x) for x in args.chunks.split(",")):
            sid = f"size-{n}"
            make_session(s.s3_bucket, sid, n)
            report = timed(lambda sid=sid: session_report(s.s3_bucket, sid), args.repeat)
            detail = timed(lambda sid=sid: session_report(s.s3_bucket, sid, chunks=True), args.repeat)

            def announce(sid: str = sid) -> None:
                storage.s3_client(s).delete_object(Bucket=s.s3_bucket, Key=events.record_key(sid))
                assert events.announce(s.s3_bucket, sid, settings=s) is not None

            sent = timed(announce, args.repeat)
            rows.append([n, report, detail, sent])
            result[str(n)] = {"report_ms": round(report, 1), "report_chunks_ms": round(detail, 1),
                              "announce_ms": round(sent, 1)}
        for k in range(args.sessions):
            make_session(s.s3_bucket, f"page-{k:04d}", 30)
        page = timed(lambda: session_page(s.s3_bucket, limit=50), args.repeat)
        print_table("session report, by chunks in the session (ms, median)",
                    ["chunks", "report_ms", "report_chunks_ms", "announce_ms"], rows)
        print_table(f"GET /sessions?limit=50 over {args.sessions + len(rows)} sessions (ms, median)",
                    ["limit", "page_ms", "per_session_ms"], [[50, page, page / 50]])
        write_result("sessions_api", {"by_chunks": result, "page_ms": round(page, 1),
                                      "page_per_session_ms": round(page / 50, 1), "sessions": args.sessions,
                                      "repeat": args.repeat, "backend": "moto ThreadedMotoServer (no network)",
                                      "load_average_1m": round(os.getloadavg()[0], 1)})
        print(json.dumps({"page_ms": round(page, 1)}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
