"""One chaos run: start the system, upload sessions like recorders do, inject the six faults, wait
until every chunk has ended, then count what happened from S3, the queues and the parts' logs.

`run(plan)` returns the result `bench/chaos.py` prints and writes, and `tests/chaos/` asserts on.
The phases:

1. A backlog: `plan.drain_sessions` sessions (chunks and manifests) are uploaded before the router
   is listening, as if their events were lost; the poison chunk is among them.
2. The parts start: the API server (behind the random fault proxy), the GPU worker (its S3 behind
   the S3 fault proxy, supervised), beat (supervised) and the router on S3's own events, with a
   second EventBridge rule so that every event arrives twice.
3. `stt-router drain` (run by beat's control worker) sends one chord per backlog session; 10% of
   the chord members fail once (S3 errors). Once the poison chunk is dead-lettered (its count of
   deaths lives in Redis, which the next phase wipes), the live sessions upload a chunk at a time.
4. During the uploads the worker's process group is SIGKILLed mid-chunk and Redis is killed and
   restarted, at fixed points of progress. Recorders' mistakes come with them (issue 14): a chunk
   uploaded again 0.2 s after its first upload with other speech (the later audio must win), a
   zero-byte chunk (failed with its reason), a session whose first manifest says `total_chunks: 0`
   (invalid, reported, corrected at the end) and one whose manifests carry an invalid language.
   A failed send (issue 14, hole 5): a session's final manifest is written once its chunks have
   ended, so its event is the one that queues the combine; the router's first invocation on that
   event runs with its broker at a dead endpoint (the send raises, the invocation fails as Lambda's
   would), then the event goes to the router with the right settings, as Lambda's retry would.
5. The run waits until every chunk is transcribed or failed and every session is combined (or the
   time limit), lets late duplicates land, and collects.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.chaos_faults import (
    RandomFaultProxy,
    S3FaultProxy,
    corrupt_chunks,
    duplicate_events,
    hold_events,
    poison_chunk,
    speech_pool,
)
from bench.chaos_system import RUN_TIMINGS, System, wait_until
from bench.common import percentile
from devstack import redis_server
from router_lambda.emf import decision_lines
from router_lambda.events import parse_event

ROOT = Path(__file__).resolve().parents[1]
MAX_RECEIVE_COUNT = int(RUN_TIMINGS["MAX_RECEIVE_COUNT"])
S3_GET_ATTEMPTS = 5  # botocore's standard mode with max_attempts=4 (the core's S3 client): 1 + 4 retries


@dataclass
class Plan:
    sessions: int = 20
    chunks_per_session: int = 10
    drain_sessions: int = 5  # of `sessions`: uploaded as a backlog, transcribed through the drain's chords
    corrupt: int = 5
    poison: bool = True
    chord_fail_share: float = 0.10
    proxy_fail_rate: float = 0.30
    proxy_stall_rate: float = 0.10
    router_timeout_s: float = 20.0  # ROUTER_REQUEST_TIMEOUT_S; stalls last this + 5 s
    worker_kills: int = 2
    redis_kills: int = 3
    redis_down_s: float = 5.0
    duplicate_events: bool = True
    upload_interval_s: float = 3.0  # a pace the two engines keep up with, so latency shows the faults
    timeout_s: float = 3600.0
    boundary_repair: bool = False
    reuploads: int = 1  # live chunks uploaded again 0.2 s after their first upload, with other speech
    zero_byte: int = 1  # live chunks uploaded with no bytes
    manifest_mistakes: bool = True  # a live session's first manifest says total_chunks 0; another's language is invalid
    failed_sends: int = 1  # live sessions whose combine-queuing router invocation first meets a dead broker
    seed: int = 8
    speech_files: int = 18

    @property
    def chunks(self) -> int:
        return self.sessions * self.chunks_per_session


@dataclass
class Chunk:
    key: str
    session_id: str
    index: int
    kind: str  # "speech", "corrupt", "poison", "empty"
    text: str | None = None
    what: str | None = None
    uploaded_at: float = 0.0
    path: str = "router"  # "router" (live upload) or "drain" (backlog)
    body: bytes = field(default=b"", repr=False)
    retake: tuple[str, bytes] | None = field(default=None, repr=False)  # (text, bytes) uploaded 0.2 s later
    etags: list[str] = field(default_factory=list)  # of each upload, in order


@dataclass
class RunState:
    chunks: dict[str, Chunk] = field(default_factory=dict)
    sessions: dict[str, list[str]] = field(default_factory=dict)  # session -> chunk keys in index order
    uploads_done: int = 0
    uploads_total: int = 0
    worker_kills: list[dict[str, Any]] = field(default_factory=list)
    chord_faults: list[str] = field(default_factory=list)
    drain_queued_at: float | None = None
    manifest_zero: str | None = None  # the session whose first manifest says total_chunks 0
    manifest_hint: str | None = None  # the session whose manifests name an invalid language
    failed_send_sessions: list[str] = field(default_factory=list)  # final manifest's first send fails
    failed_sends: list[dict[str, Any]] = field(default_factory=list)  # one per failed invocation
    held_queue: str | None = None  # the URL of the queue those sessions' manifest events go to first
    started: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)


def run(plan: Plan, run_dir: Path | None = None, say=print) -> dict[str, Any]:
    """The whole run; returns the result dictionary (see `bench/chaos.py` for its keys)."""
    run_id = f"chaos-{uuid.uuid4().hex[:8]}"
    run_dir = run_dir or ROOT / ".cache" / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    bucket = run_id
    wall = time.monotonic()
    state = RunState()
    pool = speech_pool(plan.speech_files)
    extra = {"ROUTER_REQUEST_TIMEOUT_S": str(plan.router_timeout_s),
             "BOUNDARY_REPAIR": "true" if plan.boundary_repair else "false"}
    system = System(run_dir, bucket, extra, say=say)
    proxy: RandomFaultProxy | None = None
    s3_proxy: S3FaultProxy | None = None
    marker = f"CHAOS-POISON-{uuid.uuid4().hex}"
    try:
        say(f"chaos run {run_id}: logs in {run_dir}")
        system.start_moto()
        system.start_redis()
        proxy = RandomFaultProxy(f"http://127.0.0.1:{system.api_port}", fail_rate=plan.proxy_fail_rate,
                                 stall_rate=plan.proxy_stall_rate, stall_s=plan.router_timeout_s + 5, seed=plan.seed)
        s3_proxy = S3FaultProxy(system.moto_url)
        system.configure(proxy.url, s3_proxy.url, run_id)
        clients = _clients(system)
        s3 = clients["s3"]
        s3.create_bucket(Bucket=bucket)
        # versioning on: an overwritten transcript would leave two versions (duplicate_outputs counts them)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

        _plan_chunks(plan, state, pool, marker)
        for sid in _drain_ids(plan):  # the backlog: uploaded before anything listens
            for key in state.sessions[sid]:
                _upload(s3, bucket, state.chunks[key])
            _manifest(s3, bucket, sid, total=len(state.sessions[sid]))
        say(f"backlog: {plan.drain_sessions} session(s), "
            f"{sum(len(state.sessions[s]) for s in _drain_ids(plan))} chunk(s) uploaded before the router listens")

        system.add_server()
        system.add_worker(marker)
        system.add_beat()
        took = system.start(["api", "worker", "beat"])
        system.supervise()
        system.add_router()
        took.update(system.start(["router"]))
        say("ready: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()))
        if state.failed_send_sessions:  # before duplicate_events, which copies the router's rule
            held = state.failed_send_sessions
            prefixes = [f"sessions/{sid}/" for sid in state.sessions if sid not in held]
            prefixes += [f"sessions/{sid}/chunks/" for sid in held]
            state.held_queue = hold_events(clients["events"], clients["sqs"], "stt-router-sessions", prefixes,
                                           [f"sessions/{sid}/manifest.json" for sid in held], f"{run_id}-held")
        if plan.duplicate_events:
            duplicate_events(clients["events"], clients["sqs"], "stt-router-sessions",
                             clients["sqs"].get_queue_url(QueueName="stt-router-events")["QueueUrl"])

        # fault 6: the drain's chords, 10% of their members failing once
        drain_keys = [k for s in _drain_ids(plan) for k in state.sessions[s] if state.chunks[k].kind == "speech"]
        n_fail = min(len(drain_keys), max(1 if drain_keys else 0, round(plan.chord_fail_share * len(drain_keys))))
        step = max(1, len(drain_keys) // max(1, n_fail))
        state.chord_faults = drain_keys[step // 2::step][:n_fail]
        for key in state.chord_faults:
            s3_proxy.fail_gets(bucket, key, S3_GET_ATTEMPTS)
        if drain_keys or plan.poison:
            _cli(system, "drain")
            state.drain_queued_at = time.time()
            say(f"drain queued on the control queue; {len(state.chord_faults)} chord member(s) will fail once")
        poison = next((c for c in state.chunks.values() if c.kind == "poison"), None)
        if poison is not None:
            # Redis holds the count of a chunk's deaths, and a Redis restart wipes it (the count then
            # starts again: bounded, but not the maxReceiveCount the promise names), so the poison chunk
            # ends before the live phase and its faults begin
            failed_key = f"failed/{poison.session_id}/chunks/{poison.index}.json"
            wait_until(lambda: _exists(s3, bucket, failed_key), 300, "the poison chunk to be dead-lettered", interval=1)
            say(f"poison chunk dead-lettered {time.time() - state.drain_queued_at:.0f} s after the drain was queued")

        faults = threading.Thread(target=_inject_faults, args=(plan, state, system, proxy, say), name="faults",
                                  daemon=True)
        faults.start()
        _upload_live(plan, state, s3, bucket, say)
        faults.join(timeout=600)
        _failed_sends(plan, state, system, clients, bucket, say)
        say("uploads done; waiting for every chunk and session to end")
        finished = _wait_done(plan, state, s3, bucket, say, deadline=time.monotonic() + plan.timeout_s)
        _settle(system, proxy, clients, plan)
        result = _collect(plan, state, system, proxy, s3_proxy, clients, bucket, finished)
        result["wall_time_s"] = round(time.monotonic() - wall, 1)
        result["run_dir"] = str(run_dir)
        result["plan"] = asdict(plan)
        result["notes"] = state.notes
        return result
    finally:
        system.stop()
        for p in (proxy, s3_proxy):
            if p is not None:
                p.close()


# --- planning and uploading ------------------------------------------------------------------------
def _drain_ids(plan: Plan) -> list[str]:
    return [f"night-{i:02d}" for i in range(plan.drain_sessions)]


def _live_ids(plan: Plan) -> list[str]:
    return [f"live-{i:02d}" for i in range(plan.sessions - plan.drain_sessions)]


def _plan_chunks(plan: Plan, state: RunState, pool: list[tuple[str, Path]], marker: str) -> None:
    live, night = _live_ids(plan), _drain_ids(plan)
    n = plan.chunks_per_session
    wav = next(p for _, p in pool if p.suffix == ".wav").read_bytes()
    bad = corrupt_chunks(wav)
    corrupt_at = {(live[(i * max(1, len(live) // max(1, plan.corrupt))) % len(live)], 1 + (i % max(1, n - 1)))
                  for i in range(plan.corrupt)} if live else set()
    while len(corrupt_at) < min(plan.corrupt, len(live) * n):  # more corrupt chunks than live sessions
        corrupt_at.add((live[len(corrupt_at) % len(live)], len(corrupt_at) % n))
    corrupt_iter = iter(sorted(corrupt_at))
    corrupt_map = {pos: bad[i % len(bad)] for i, pos in enumerate(corrupt_iter)}
    counter = 0
    for sid in [*night, *live]:
        keys = []
        for idx in range(n):
            text, path = pool[counter % len(pool)]
            counter += 1
            if (sid, idx) in corrupt_map:
                ext, body, what = corrupt_map[(sid, idx)]
                c = Chunk(f"sessions/{sid}/chunks/{idx:03d}.{ext}", sid, idx, "corrupt", what=what, body=body)
            elif plan.poison and night and sid == night[0] and idx == min(3, n - 1):
                c = Chunk(f"sessions/{sid}/chunks/{idx:03d}.wav", sid, idx, "poison",
                          what="valid speech carrying the marker that kills its decoding process (fake)",
                          body=poison_chunk(wav, marker))
            else:
                c = Chunk(f"sessions/{sid}/chunks/{idx:03d}{path.suffix}", sid, idx, "speech", text=text,
                          body=path.read_bytes())
            c.path = "drain" if sid in night else "router"
            state.chunks[c.key] = c
            keys.append(c.key)
        state.sessions[sid] = keys
    state.uploads_total = len(live) * n
    _plan_mistakes(plan, state, pool, counter)


def _plan_mistakes(plan: Plan, state: RunState, pool: list[tuple[str, Path]], counter: int) -> None:
    """Recorders' mistakes on live speech chunks, none of them a session's last chunk (whose
    upload completes the session): re-uploads, zero-byte chunks, and the two manifest mistakes."""
    live = _live_ids(plan)
    spots = [state.sessions[sid][i] for i in range(plan.chunks_per_session - 1) for sid in live
             if state.chunks[state.sessions[sid][i]].kind == "speech"]
    for n, key in enumerate(spots[:plan.reuploads]):
        c = state.chunks[key]
        others = [(t, p) for t, p in pool if t != c.text]  # other speech, in the chunk's own format if there is
        same = [(t, p) for t, p in others if p.suffix == Path(key).suffix] or others
        text, path = same[(counter + n) % len(same)]
        c.retake = (text, path.read_bytes())
    for key in spots[plan.reuploads:plan.reuploads + plan.zero_byte]:
        c = state.chunks[key]
        c.kind, c.text, c.body, c.what = "empty", None, b"", "a zero-byte chunk"
    if plan.manifest_mistakes and live:
        state.manifest_zero = live[min(1, len(live) - 1)]
        state.manifest_hint = live[min(2, len(live) - 1)]
    # the last live sessions, not one with a manifest mistake
    plain = [sid for sid in reversed(live) if sid not in (state.manifest_zero, state.manifest_hint)]
    state.failed_send_sessions = sorted(plain[:plan.failed_sends])


def _upload(s3: Any, bucket: str, c: Chunk) -> None:
    c.etags.append(s3.put_object(Bucket=bucket, Key=c.key, Body=c.body)["ETag"].strip('"'))
    c.uploaded_at = time.time()
    if c.retake is not None:  # the recorder uploads it again 0.2 s later: the later audio is the chunk
        time.sleep(0.2)
        c.text, c.body = c.retake
        c.etags.append(s3.put_object(Bucket=bucket, Key=c.key, Body=c.body)["ETag"].strip('"'))


def _manifest(s3: Any, bucket: str, sid: str, total: int | None, language: str = "en") -> str:
    body: dict[str, Any] = {"title": f"chaos session {sid}", "language": language}
    if total is not None:
        body["total_chunks"] = total
    put = s3.put_object(Bucket=bucket, Key=f"sessions/{sid}/manifest.json", Body=json.dumps(body).encode())
    return str(put["ETag"]).strip('"')


def _upload_live(plan: Plan, state: RunState, s3: Any, bucket: str, say) -> None:
    """Recorders: every live session uploads one chunk per round; the manifest gets total_chunks at the end."""
    live = _live_ids(plan)

    def language(sid: str) -> str:
        return "english" if sid == state.manifest_hint else "en"  # an invalid hint: dropped, listed

    for sid in live:
        _manifest(s3, bucket, sid, total=0 if sid == state.manifest_zero else None, language=language(sid))
    last_say = time.monotonic()
    for idx in range(plan.chunks_per_session):
        for sid in live:
            _upload(s3, bucket, state.chunks[state.sessions[sid][idx]])
            state.uploads_done += 1
            if idx == plan.chunks_per_session - 1 and sid not in state.failed_send_sessions:
                _manifest(s3, bucket, sid, total=plan.chunks_per_session, language=language(sid))
            if time.monotonic() - last_say > 30:
                last_say = time.monotonic()
                say(f"  uploaded {state.uploads_done}/{state.uploads_total} live chunks")
            time.sleep(plan.upload_interval_s)


# --- the failed send (issue 14, hole 5) ---------------------------------------------------------------
# one Lambda invocation of the router's handler, in a process of its own with the settings it is given
_INVOKE = """
import json, sys, uuid
from router_lambda.handler import handler
from router_lambda.local import LocalContext
handler(json.load(sys.stdin), LocalContext(150, str(uuid.uuid4())))
"""


def _held_events(sqs: Any, url: str, wait_s: int = 1) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s).get("Messages", []):
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        out.append((m, json.loads(m["Body"])))
    return out


def _failed_sends(plan: Plan, state: RunState, system: System, clients: dict[str, Any], bucket: str, say) -> None:
    """For each failed-send session: once its chunks have ended, write its final manifest (so that
    manifest's event is the one that queues the combine), invoke the router's handler on that event
    with its broker at a closed port (the combine's send raises, the invocation fails), then hand the
    event unchanged to the router's queue (`router-local` invokes it with the right settings, as
    Lambda retries a failed invocation). Earlier manifest events of these sessions are handed on at once."""
    if not state.failed_send_sessions or state.held_queue is None:
        return
    sqs, s3 = clients["sqs"], clients["s3"]
    router_queue = sqs.get_queue_url(QueueName="stt-router-events")["QueueUrl"]
    while held := _held_events(sqs, state.held_queue):  # the first manifests (no total_chunks): not this fault
        for m, _ in held:
            sqs.send_message(QueueUrl=router_queue, MessageBody=m["Body"])
    dead = f"sqs://chaos:chaos@127.0.0.1:{redis_server.free_port()}"  # nothing listens there
    log = system.run_dir / "failed-send.log"
    for sid in state.failed_send_sessions:
        keys = set(state.sessions[sid])

        def chunks_ended(keys: set[str] = keys) -> bool:
            done_t, done_f, _ = _ended(state, s3, bucket)
            return keys <= done_t | done_f

        wait_until(chunks_ended, 300, f"the chunks of {sid} to end", interval=1)
        # and no delivery left in flight: a late duplicate of one of its chunks (a run's other messages
        # skip after it) checks the session's completion too, and would queue the combine first
        try:
            wait_until(lambda: _queue_quiet(sqs, system.env["TRANSCRIBE_QUEUE"]), 90, "the transcribe queue to empty",
                       interval=1)
        except Exception:
            state.notes.append(f"failed send for {sid}: the transcribe queue was not empty before its manifest")
        # just after a sweep: the sweeper, which checks ended sessions every SWEEP_INTERVAL_S, is not
        # to race the failed invocation or its retry for the combine
        sweeps = system.log("beat").count("sweep_done bucket=")
        try:
            wait_until(lambda n=sweeps: system.log("beat").count("sweep_done bucket=") > n, 60, "a sweep", interval=0.2)
        except Exception:
            state.notes.append(f"failed send for {sid}: no sweep seen before its manifest was written")
        etag = _manifest(s3, bucket, sid, total=plan.chunks_per_session)
        key = f"sessions/{sid}/manifest.json"
        entry: dict[str, Any] = {"session": sid, "key": key, "etag": etag, "broker": dead}
        deadline = time.monotonic() + 60
        event = None
        while event is None and time.monotonic() < deadline:
            for m, body in _held_events(sqs, state.held_queue):
                if any(getattr(o, "etag", None) == etag for o in parse_event(body)):  # the router's reader
                    event = m["Body"]
                else:
                    sqs.send_message(QueueUrl=router_queue, MessageBody=m["Body"])
        if event is None:
            state.notes.append(f"failed send for {sid} not injected: its manifest's event never came")
            say(f"  fault: failed send for {sid} not injected (no event)")
            continue
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-c", _INVOKE], input=event, env=system.child_env(CELERY_BROKER_URL=dead),
                             cwd=ROOT, capture_output=True, text=True, timeout=170)
        with log.open("a") as f:
            f.write(f"--- {sid}: exit {run.returncode}\n{run.stdout}{run.stderr}")
        first = next((d for d in decision_lines(run.stdout) if d.get("key") == key), {})
        entry.update(invocation_failed=run.returncode != 0, invocation_s=round(time.monotonic() - started, 1),
                     failed_at=time.time(),
                     first_decision=first.get("decision"), first_reason=str(first.get("reason", ""))[:300],
                     error=(run.stderr.strip().splitlines() or [""])[-1][:300])
        sqs.send_message(QueueUrl=router_queue, MessageBody=event)  # the retry, with the right settings
        entry["retried_at"] = time.time()
        state.failed_sends.append(entry)
        say(f"  fault: {sid}'s final manifest routed with a dead broker: exit {run.returncode} "
            f"({entry['first_decision']}) in {entry['invocation_s']} s; the event goes to the router again")


# --- faults during the uploads ----------------------------------------------------------------------
def _inject_faults(plan: Plan, state: RunState, system: System, proxy: RandomFaultProxy, say) -> None:
    """Worker kills and Redis outages at their share of the uploads. Before a kill and after Redis
    comes back, the server's `/health` answers 503 for the next round of probes, so a round of chunks
    is certain to queue: the kill finds a chunk on the worker, and the worker has work to resume after
    the outage, however few chunks the random proxy faults would have sent to the queue."""
    n_live = len(_live_ids(plan))
    schedule = sorted([((k + 0.5) / (plan.worker_kills + 0.5), "worker") for k in range(plan.worker_kills)]
                      + [((k + 1) / (plan.redis_kills + 1), "redis") for k in range(plan.redis_kills)])
    for at, what in schedule:
        while state.uploads_done < at * state.uploads_total and state.uploads_done < state.uploads_total:
            time.sleep(0.2)
        try:
            if what == "redis":
                system.kill_redis()
                say(f"  fault: Redis killed (SIGKILL) at {state.uploads_done}/{state.uploads_total} uploads")
                time.sleep(plan.redis_down_s)
                system.restart_redis()
                say(f"  fault: Redis restarted after {system.redis_events[-1]['down_s']:.1f} s (empty: no persistence)")
                _queue_next_round(proxy, n_live, say)
            else:
                _queue_next_round(proxy, n_live, say)
                _kill_worker_mid_chunk(state, system, say)
        except Exception as e:  # a fault that could not be injected is reported, never hidden
            state.notes.append(f"{what} fault at {at:.2f} not injected: {type(e).__name__}: {e}")
            say(f"  fault {what} not injected: {e}")


def _queue_next_round(proxy: RandomFaultProxy, n_live: int, say) -> None:
    probes = 2 * n_live  # every event arrives twice
    proxy.inject("GET", "/health", status=503, times=probes,
                 body={"status": "busy", "reason": "chaos: injected so the next chunks queue"})
    say(f"  fault: /health answers 503 to the next {probes} probes (those chunks queue)")


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except Exception:
        return False


_START = re.compile(r"chunk_start key=(\S+) attempt=(\d+) delivery=(\d+)")
_DONE = re.compile(r"chunk_done key=(\S+) status=(\w+)")


def _in_progress(log: str) -> dict[str, int]:
    """key -> delivery for chunks started and not finished in this log."""
    running: dict[str, int] = {}
    for line in log.splitlines():
        if m := _START.search(line):
            running[m[1]] = int(m[3])
        elif (m := _DONE.search(line)) and m[1] in running:
            del running[m[1]]
    return running


def _kill_worker_mid_chunk(state: RunState, system: System, say, timeout: float = 180) -> None:
    """SIGKILL the worker's whole process group while it transcribes a chunk (not one killed before)."""
    # not a chunk killed before (a third start would fail it as worker_lost), and not a chord member
    # that fails once on purpose (its figures would mix two faults)
    killed = {k["key"] for k in state.worker_kills} | set(state.chord_faults)
    part = system.parts["worker"]

    def target() -> tuple[str, int] | None:
        if not system.alive("worker"):
            return None
        running = _in_progress(system.log("worker")[part.log_offset:])
        for key, delivery in running.items():
            c = state.chunks.get(key)
            if c is not None and c.kind == "speech" and key not in killed:
                return key, delivery
        return None

    key, delivery = wait_until(target, timeout, "a chunk in progress on the worker", interval=0.05)
    pid = system.kill_group("worker")
    state.worker_kills.append({"key": key, "delivery": delivery, "killed_at": time.time(), "pid": pid})
    say(f"  fault: worker process group {pid} SIGKILLed while transcribing {key} (delivery {delivery})")


# --- waiting -----------------------------------------------------------------------------------------
def _listing(s3: Any, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def _ended(state: RunState, s3: Any, bucket: str) -> tuple[set[str], set[str], set[str]]:
    """(transcribed chunk keys, failed chunk keys, combined session ids) from three listings."""
    transcripts = _listing(s3, bucket, "transcripts/")
    failed = _listing(s3, bucket, "failed/")
    done_t, done_f = set(), set()
    for key, c in state.chunks.items():
        if f"transcripts/{c.session_id}/chunks/{c.index}.json" in transcripts:
            done_t.add(key)
        elif f"failed/{c.session_id}/chunks/{c.index}.json" in failed:
            done_f.add(key)
    combined = {sid for sid in state.sessions if f"transcripts/{sid}/session.json" in transcripts}
    return done_t, done_f, combined


def _wait_done(plan: Plan, state: RunState, s3: Any, bucket: str, say, deadline: float) -> bool:
    last_say = 0.0
    while time.monotonic() < deadline:
        done_t, done_f, combined = _ended(state, s3, bucket)
        pending = len(state.chunks) - len(done_t) - len(done_f)
        if not pending and len(combined) == len(state.sessions):
            say(f"  all ended: {len(done_t)} transcribed, {len(done_f)} failed, {len(combined)} sessions combined")
            return True
        if time.monotonic() - last_say > 30:
            last_say = time.monotonic()
            say(f"  {len(done_t)} transcribed, {len(done_f)} failed, {pending} pending; "
                f"{len(combined)}/{len(state.sessions)} sessions combined")
        time.sleep(3)
    say("  time limit reached before every chunk and session ended")
    return False


def _queue_quiet(sqs: Any, name: str) -> bool:
    """No message waiting, in flight or delayed on the SQS queue `name`."""
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return not any(int(a.get(k, 0)) for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                              "ApproximateNumberOfMessagesDelayed"))


def _settle(system: System, proxy: RandomFaultProxy, clients: dict[str, Any], plan: Plan) -> None:
    """Let late duplicates land: stalled requests forwarded, queued duplicates run, events handled."""
    sqs = clients["sqs"]
    queues = [system.env["TRANSCRIBE_QUEUE"], "stt-router-events"]

    def quiet() -> bool:
        return all(_queue_quiet(sqs, name) for name in queues)

    time.sleep(plan.router_timeout_s + 6)  # the last stalled request is forwarded by now
    try:
        wait_until(quiet, 120, "the queues to empty", interval=1)
    except Exception as e:
        system.say(f"  queues not empty after the run: {e}")


# --- collecting ---------------------------------------------------------------------------------------
def _clients(system: System) -> dict[str, Any]:
    import boto3

    kw = {"endpoint_url": system.moto_url, "region_name": "us-east-1", "aws_access_key_id": "chaos",
          "aws_secret_access_key": "chaos"}
    return {name: boto3.client(name, **kw) for name in ("s3", "sqs", "events")}


def _cli(system: System, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    from devstack.stack import stt_router

    return subprocess.run([*stt_router(), *args], env=system.child_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _versions(s3: Any, bucket: str, prefix: str) -> Counter:
    counts: Counter = Counter()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            counts[v["Key"]] += 1
    return counts


def _chunk_duplicates(s3: Any, bucket: str, versions: Counter) -> dict[str, int]:
    """Chunk transcripts written more than once for one audio version (a re-uploaded chunk's new
    audio may replace its old transcript: that is one output per audio, not a duplicate)."""
    out = {}
    for key, n in versions.items():
        if n < 2 or "/chunks/" not in key:
            continue
        sources: Counter = Counter()
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
            for v in page.get("Versions", []):
                if v["Key"] == key:
                    meta = s3.head_object(Bucket=bucket, Key=key, VersionId=v["VersionId"]).get("Metadata", {})
                    sources[meta.get("source-etag") or v["VersionId"]] += 1
        if any(c > 1 for c in sources.values()):
            out[key] = n
    return out


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _collect(plan: Plan, state: RunState, system: System, proxy: RandomFaultProxy, s3_proxy: S3FaultProxy,
             clients: dict[str, Any], bucket: str, finished: bool) -> dict[str, Any]:
    from tests.support.speech import word_error_rate

    s3 = clients["s3"]
    done_t, done_f, combined = _ended(state, s3, bucket)
    logs = {name: system.log(name) for name in ("api", "worker", "beat", "router")}
    engine_runs: Counter = Counter()
    for name in ("api", "worker"):
        engine_runs.update(re.findall(r"engine_run .*? key=(sessions/\S+)", logs[name]))
    versions = _versions(s3, bucket, "transcripts/")
    duplicate_outputs = {k: n for k, n in versions.items() if n > 1 and "/chunks/" not in k}
    duplicate_outputs.update(_chunk_duplicates(s3, bucket, versions))

    # chunks: transcribed, failed (with reasons), lost; latency
    failed, latencies = [], {"router": [], "drain": []}
    for key in sorted(done_f):
        c = state.chunks[key]
        record = _get_json(s3, bucket, f"failed/{c.session_id}/chunks/{c.index}.json")
        failed.append({"key": key, "kind": c.kind, "what": c.what, "error": record["error"],
                       "reason": record["reason"], "attempts": record["attempts"],
                       "expected": c.kind != "speech"})
    for key in done_t:
        c = state.chunks[key]
        t = _get_json(s3, bucket, f"transcripts/{c.session_id}/chunks/{c.index}.json")
        # a backlog chunk waits for the drain by design: its latency counts from the drain's start
        since = c.uploaded_at if c.path == "router" else (state.drain_queued_at or c.uploaded_at)
        latencies[c.path].append(_ts(t["created_at"]) - since)
    lost = sorted(set(state.chunks) - done_t - done_f)
    transcribed_bad = sorted(k for k in done_t if state.chunks[k].kind != "speech")

    # sessions: combined once, chunks in order, the words in order
    sessions = {}
    for sid, keys in state.sessions.items():
        entry: dict[str, Any] = {"combined": sid in combined,
                                 "json_versions": versions.get(f"transcripts/{sid}/session.json", 0)}
        if sid in combined:
            st = _get_json(s3, bucket, f"transcripts/{sid}/session.json")
            indices = [c["index"] for c in st["chunks"]]
            offsets = [c["offset"] for c in st["chunks"]]
            entry.update(partial=st["partial"], in_order=indices == list(range(len(keys)))
                         and offsets == sorted(offsets),
                         failed_chunks=[c["index"] for c in st["chunks"] if c["status"] != "transcribed"])
            expected = " ".join(state.chunks[k].text or "" for k in keys
                                if state.chunks[k].kind == "speech" and k in done_t)
            text = " ".join(s["text"] for s in st["segments"] if not s.get("gap"))
            entry["wer"] = round(word_error_rate(expected, text), 3)
        sessions[sid] = entry
    sessions_combined = sum(1 for e in sessions.values() if e["combined"])
    combined_once = sum(1 for e in sessions.values() if e["json_versions"] == 1)

    decisions = list(decision_lines(logs["router"]))
    dlq = _dead_letters(system)
    result = {
        "finished": finished,
        "sent": len(state.chunks),
        "transcribed": len(done_t),
        "failed": failed,
        "lost": len(lost),
        "lost_keys": lost,
        "duplicate_outputs": len(duplicate_outputs),
        "duplicate_output_keys": duplicate_outputs,
        "sessions_expected": len(state.sessions),
        "sessions_combined": sessions_combined,
        "sessions_combined_once": combined_once,
        # upload to transcript, chunks routed as they were uploaded (backlog chunks: `latency_s.drain`)
        "worst_latency_s": round(max(latencies["router"], default=0.0), 1),
        "latency_s": {path: {"p50": round(percentile(v, 50), 1), "p95": round(percentile(v, 95), 1),
                             "max": round(max(v, default=0.0), 1), "chunks": len(v),
                             "from": "upload" if path == "router" else "the drain's start"}
                      for path, v in latencies.items()},
        "unexpected_failures": sum(1 for f in failed if not f["expected"]),
        "bad_input_transcribed": transcribed_bad,
        "sessions": sessions,
        "faults": {
            "direct_path": _fault_direct(proxy, decisions, state),
            "worker_kills": _fault_kills(state, logs["worker"], done_t, s3, bucket),
            "redis_restarts": _fault_redis(system, logs, state),
            "duplicate_events": _fault_duplicates(decisions, state, logs, engine_runs, duplicate_outputs),
            "bad_input": _fault_bad_input(state, failed, dlq, logs, engine_runs, decisions),
            "chords": _fault_chords(state, sessions, logs, s3_proxy, plan),
            "mistakes": _fault_mistakes(state, sessions, decisions, failed, s3, bucket),
            "failed_sends": _fault_failed_sends(state, sessions, decisions, logs["beat"]),
        },
        "restarts": {name: len(part.starts) - 1 for name, part in system.parts.items()},
    }
    return result


def _dead_letters(system: System) -> dict[str, Any]:
    out = _cli(system, "dlq", "list", "--json")
    letters = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {"returncode": out.returncode, "letters": letters, "stderr": out.stderr[-2000:]}


def _fault_direct(proxy: RandomFaultProxy, decisions: list[dict[str, Any]], state: RunState) -> dict[str, Any]:
    chunk_decisions = [d for d in decisions if d.get("key") in state.chunks]
    attempts = [int(d.get("attempts") or 0) for d in chunk_decisions]
    by = Counter(d["decision"] for d in decisions)
    queued = [d for d in chunk_decisions if d["decision"] == "queued"]
    return {
        "proxy": proxy.figures(),
        "decisions": dict(by),
        "max_direct_attempts": max(attempts, default=0),
        "decisions_over_3_attempts": sum(1 for a in attempts if a > 3),
        "router_attempts_total": sum(attempts),
        "queued_after_3_failed_attempts": sum(1 for d in queued if int(d.get("attempts") or 0) == 3),
        "queued_server_not_ready": sum(1 for d in queued if not d.get("attempts")),
        "direct": by.get("direct", 0),
    }


def _fault_kills(state: RunState, worker_log: str, done_t: set[str], s3: Any, bucket: str) -> list[dict[str, Any]]:
    out = []
    for k in state.worker_kills:
        c = state.chunks[k["key"]]
        back = None
        if k["key"] in done_t:
            t = _get_json(s3, bucket, f"transcripts/{c.session_id}/chunks/{c.index}.json")
            back = round(_ts(t["created_at"]) - k["killed_at"], 1)
        starts = len(re.findall(rf"chunk_start key={re.escape(k['key'])} ", worker_log))
        # the killed delivery never logged chunk_done: a later one is its message, delivered again
        again = [m[1] for m in _DONE.finditer(worker_log) if m[1] == k["key"]]
        out.append({"key": k["key"], "delivery_killed": k["delivery"], "came_back": k["key"] in done_t,
                    "transcribed_after_s": back, "starts": starts, "redelivered": bool(again),
                    "redelivered_as": sorted({m[2] for m in _DONE.finditer(worker_log) if m[1] == k["key"]})})
    return out


def _fault_redis(system: System, logs: dict[str, str], state: RunState) -> dict[str, Any]:
    """Each outage, and whether the worker went on transcribing after it (chunk_done lines later)."""
    done_times = []  # any task the worker finished (a chunk, a skipped duplicate, a combine)
    for line in logs["worker"].splitlines():
        if re.search(r"Task tasks\.\w+\[[^\]]+\] succeeded in", line):
            m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)", line)
            if m:
                done_times.append(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").timestamp() + int(m[2]) / 1000)
    outages = []
    for ev in system.redis_events:
        after = [t for t in done_times if t > ev.get("restarted_at", float("inf"))]
        outages.append({"down_s": ev.get("down_s"), "worker_tasks_after": len(after),
                        "first_task_after_s": round(min(after) - ev["restarted_at"], 1) if after else None})
    return {"outages": outages, "worker_alive_at_end": system.alive("worker"),
            "beat_restarts": len(system.parts["beat"].starts) - 1,
            "worker_restarts": len(system.parts["worker"].starts) - 1,
            "redis_errors_logged": {n: len(re.findall(r"(?i)redis.*(error|refused)", logs[n])) for n in logs}}


def _fault_duplicates(decisions: list[dict[str, Any]], state: RunState, logs: dict[str, str], engine_runs: Counter,
                      duplicate_outputs: dict[str, int]) -> dict[str, Any]:
    per_key = Counter(d["key"] for d in decisions if d.get("key") in state.chunks)
    live = [k for k, c in state.chunks.items() if c.path == "router"]
    return {
        "live_chunks": len(live),
        "chunk_events_routed": sum(per_key[k] for k in live),
        "chunks_routed_twice_or_more": sum(1 for k in live if per_key[k] >= 2),
        "skipped_transcript_exists": sum(1 for d in decisions if d["decision"] == "skipped"
                                         and d.get("reason") == "transcript exists"),
        "duplicate_write_refused": sum(logs[n].count("duplicate_write_refused") for n in ("api", "worker")),
        "session_write_refused": sum(logs[n].count("session_write_refused") for n in ("api", "worker")),
        "engine_runs": sum(engine_runs.values()),
        "chunks_run_more_than_once": sum(1 for n in engine_runs.values() if n > 1),
        "duplicate_outputs": len(duplicate_outputs),
    }


def _fault_bad_input(state: RunState, failed: list[dict[str, Any]], dlq: dict[str, Any], logs: dict[str, str],
                     engine_runs: Counter, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    by_key = {f["key"]: f for f in failed}
    letters: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for letter in dlq["letters"]:
        if letter.get("key"):
            letters[letter["key"]].append(letter)
    out: dict[str, Any] = {"corrupt": [], "poison": None, "dlq_list_ok": dlq["returncode"] == 0}
    for key, c in sorted(state.chunks.items()):
        if c.kind in ("speech", "empty"):  # an empty chunk is a recorder's mistake: `faults.mistakes`
            continue
        f = by_key.get(key, {})
        dl = letters.get(key, [])
        entry = {"key": key, "what": c.what, "failed_record": bool(f), "error": f.get("error"),
                 "reason": f.get("reason"), "attempts": f.get("attempts"),
                 "dead_letters": [{"kind": x["kind"], "error": x["error"], "attempts": x.get("attempts")} for x in dl],
                 "listed_by_dlq_list": bool(dl), "engine_runs": engine_runs.get(key, 0),
                 "task_retries": logs["worker"].count(f"chunk_retry key={key} "),
                 "routes": sorted(Counter(d["decision"] for d in decisions if d.get("key") == key).items())}
        if c.kind == "poison":
            # each death is one receive; the receive after the last death finds the count at its limit
            # the lease a chunk's delivery holds is named <bucket>/<key> (tasks.locks.chunk_name)
            entry["pool_process_deaths"] = len(re.findall(rf"delivery_died lease=\S*/{re.escape(key)} ",
                                                          logs["worker"]))
            entry["deliveries"] = entry["pool_process_deaths"] + (1 if f else 0)
            out["poison"] = entry
        else:
            out["corrupt"].append(entry)
    return out


def _fault_chords(state: RunState, sessions: dict[str, Any], logs: dict[str, str], s3_proxy: S3FaultProxy,
                  plan: Plan) -> dict[str, Any]:
    drain = re.findall(r"drain_done bucket=\S+ sessions=(\d+) chunks=(\d+)", logs["beat"])
    night = _drain_ids(plan)
    return {
        "drain": {"sessions": int(drain[-1][0]), "chunks": int(drain[-1][1])} if drain else None,
        # tried again once: its task retried, or (in a session run) deferred to the backlog's next delivery
        "failing_once": [{"key": k, "task_retries": logs["worker"].count(f"chunk_retry key={k} ")
                          + logs["worker"].count(f"run_deferred key={k} ")}
                         for k in state.chord_faults],
        "s3_errors_injected": s3_proxy.injected(),
        "sessions": len(night),
        "combined_once": sum(1 for s in night if sessions[s]["json_versions"] == 1),
        "in_order": sum(1 for s in night if sessions[s].get("in_order")),
        "session_combined_lines": {s: logs["worker"].count(f"session_combined session={s} ") for s in night},
    }


def _fault_mistakes(state: RunState, sessions: dict[str, Any], decisions: list[dict[str, Any]],
                    failed: list[dict[str, Any]], s3: Any, bucket: str) -> dict[str, Any]:
    """Re-uploaded chunks (whose transcript must be the later audio's), zero-byte chunks (failed
    with the reason), and the manifest mistakes (reported by the router; the session still
    combined once)."""
    from tests.support.speech import word_error_rate

    by_key = {f["key"]: f for f in failed}
    reuploads = []
    for key, c in sorted(state.chunks.items()):
        if c.retake is None:
            continue
        entry: dict[str, Any] = {"key": key, "uploads": len(c.etags), "later_etag": c.etags[-1]}
        try:
            t = _get_json(s3, bucket, f"transcripts/{c.session_id}/chunks/{c.index}.json")
            entry.update(source_etag=t.get("source_etag"), wer_later=round(word_error_rate(c.text or "", " ".join(
                s["text"] for s in t["segments"])), 3))
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        entry["later_audio_won"] = entry.get("source_etag") == c.etags[-1] and entry.get("wer_later", 1.0) < 0.35
        reuploads.append(entry)
    empty = [{"key": k, "failed_record": k in by_key, "reason": by_key.get(k, {}).get("reason"),
              "routes": sorted(Counter(d["decision"] for d in decisions if d.get("key") == k).items())}
             for k, c in sorted(state.chunks.items()) if c.kind == "empty"]
    manifests = {}
    for what, sid in (("total_chunks_0", state.manifest_zero), ("invalid_language", state.manifest_hint)):
        if sid is None:
            continue
        routed = [d for d in decisions if d.get("key") == f"sessions/{sid}/manifest.json"]
        manifests[what] = {
            "session": sid,
            "reported": any(d["decision"] == "failed" and "manifest invalid" in d.get("reason", "") for d in routed)
            if what == "total_chunks_0" else
            any("language" in " ".join(d.get("detail", {}).get("problems", [])) for d in routed),
            "combined_once": sessions[sid]["json_versions"] == 1,
        }
    return {"reuploads": reuploads, "zero_byte": empty, "manifests": manifests}


def _log_times(log: str, pattern: str) -> list[float]:
    """The times of a Celery log's lines matching `pattern` (lines start `[YYYY-mm-dd HH:MM:SS,ms`)."""
    out = []
    for line in log.splitlines():
        if re.search(pattern, line) and (m := re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)", line)):
            out.append(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").timestamp() + int(m[2]) / 1000)
    return out


def _fault_failed_sends(state: RunState, sessions: dict[str, Any], decisions: list[dict[str, Any]],
                        beat_log: str) -> dict[str, Any]:
    """Each failed send: its invocation failed on the dead broker, and the same event, routed again
    with the right settings, queued the combine (the once-only flag was taken back: kept, it would
    hold every trigger off for its TTL); combined once. Should a sweep come between the two, the
    sweep queues it, also within the flag's TTL of the failure."""
    flag_ttl = max(60, int(RUN_TIMINGS["VISIBILITY_TIMEOUT_S"]))  # trigger_combine's once-only flag
    out = []
    for e in state.failed_sends:
        retried = [d for d in decisions if d.get("key") == e["key"] and d.get("etag") == e["etag"]]
        swept = [t - e["failed_at"] for t in _log_times(beat_log, rf"combine_triggered session={e['session']} ")
                 if t >= e["failed_at"] - 1]
        entry = {**e, "retry_decisions": [d["decision"] for d in retried],
                 "retry_combine_queued": any(d.get("detail", {}).get("combine_queued") for d in retried),
                 "swept_after_s": round(min(swept), 1) if swept else None,
                 "combined_once": sessions[e["session"]]["json_versions"] == 1}
        entry["queued_within_flag_ttl"] = entry["retry_combine_queued"] or (
            entry["swept_after_s"] is not None and entry["swept_after_s"] < flag_ttl)
        out.append(entry)
    return {"sessions": state.failed_send_sessions, "failed_sends": sum(1 for e in out if e["invocation_failed"]),
            "sends": out}


def checks(r: dict[str, Any]) -> dict[str, bool]:
    """The promise, as checks on a run's result (the CI test asserts the same)."""
    f = r["faults"]
    bad = f["bad_input"]
    corrupt = bad["corrupt"]
    poison = bad["poison"]
    chords = f["chords"]
    plan = r["plan"]
    proxy = f["direct_path"]["proxy"]
    return {
        "every fault injected": (len(f["worker_kills"]) == plan["worker_kills"]
                                 and len(f["redis_restarts"]["outages"]) == plan["redis_kills"]
                                 and (proxy["requests"] < 10
                                      or (proxy["injected_5xx"] > 0 and proxy["stalled_past_timeout"] > 0))
                                 and len(corrupt) == plan["corrupt"] and (poison is not None) == plan["poison"]
                                 and (len(chords["failing_once"]) > 0) == (plan["drain_sessions"] > 0)),
        "every chunk ended (lost == 0)": r["lost"] == 0,
        "no duplicate outputs": r["duplicate_outputs"] == 0,
        "every session combined": r["sessions_combined"] == r["sessions_expected"],
        "every session combined exactly once": r["sessions_combined_once"] == r["sessions_expected"],
        "only bad input failed": r["unexpected_failures"] == 0 and not r["bad_input_transcribed"],
        "<= 3 direct attempts per decision": f["direct_path"]["decisions_over_3_attempts"] == 0,
        "killed chunks came back": all(k["came_back"] and k["redelivered"] for k in f["worker_kills"]),
        "worker consumed after every Redis restart": all(o["worker_tasks_after"] > 0
                                                         for o in f["redis_restarts"]["outages"]),
        "every event routed twice": (f["duplicate_events"]["chunks_routed_twice_or_more"]
                                     == f["duplicate_events"]["live_chunks"]) if plan["duplicate_events"]
        else True,
        "corrupt: failed record + one dead letter, no retries": all(
            c["failed_record"] and len(c["dead_letters"]) == 1 and c["task_retries"] == 0
            and c["engine_runs"] == 0 for c in corrupt),
        "corrupt: listed by dlq list": bad["dlq_list_ok"] and all(c["listed_by_dlq_list"] for c in corrupt),
        "poison chunk dead-lettered after maxReceiveCount": poison is None or (
            poison["failed_record"] and poison["listed_by_dlq_list"]
            and poison["deliveries"] <= MAX_RECEIVE_COUNT),
        "chord sessions combined once, in order": chords["combined_once"] == chords["in_order"] == chords["sessions"],
        "chord members failed once then succeeded": all(x["task_retries"] == 1 for x in chords["failing_once"]),
        "re-uploaded chunks: the later audio's transcript": (len(f["mistakes"]["reuploads"]) == plan["reuploads"]
                                                             and all(x["later_audio_won"]
                                                                     for x in f["mistakes"]["reuploads"])),
        "zero-byte chunks failed with the reason": (len(f["mistakes"]["zero_byte"]) == plan["zero_byte"] and all(
            x["failed_record"] and "0 bytes" in (x["reason"] or "") for x in f["mistakes"]["zero_byte"])),
        "manifest mistakes reported, sessions combined once": all(
            m["reported"] and m["combined_once"] for m in f["mistakes"]["manifests"].values())
        and len(f["mistakes"]["manifests"]) == (2 if plan["manifest_mistakes"] else 0),
        "failed sends: the invocation failed, the combine queued at once after, combined once": (
            len(f["failed_sends"]["sends"]) == plan.get("failed_sends", 0) and all(
                x["invocation_failed"] and x["first_decision"] == "error" and x["queued_within_flag_ttl"]
                and x["combined_once"] for x in f["failed_sends"]["sends"])),
    }
