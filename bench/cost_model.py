"""The cost model behind `bench/cost.py`: a day of uploads and a discrete-event simulation of
each capacity policy over it. Pure Python, seeded, deterministic; no AWS, no clock.

What is modelled (defaults are the design's "Cost model parameters"):
- Sessions start on an hourly profile (office hours, quiet nights), a share of them at the top
  of the hour (meetings: bursts), a share uploaded all at once at the end (offline recorders).
  A live session uploads one chunk each `chunk_s` seconds.
- Every upload invokes the router Lambda (200 ms, +400 ms on a cold container). With a server
  up and a free slot the router calls it and waits for the transcript (the Lambda is billed
  for that wait); with the server busy (/health 503) it queues; with the server down the health
  probe times out (`probe_timeout_s`) and it queues.
- A GPU instance transcribes one chunk at a time at `gpu_speed_x` real time. The server box also
  runs a worker that takes queued chunks between direct requests (`server_consumes_queue`).
- GPU instances are billed per second with a 60 s minimum per start, from the start (the cold
  start is paid in full) to the stop. An always-on GPU is paid 24 h a day.
- The midnight drain and the queue-depth scaler ask `transcription.scaling.desired_workers`,
  the function the real beat task calls, for how many workers to run.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import asdict, dataclass, field

from bench.common import percentile
from transcription import scaling
from transcription.settings import Settings

_DEFAULTS = Settings.model_fields  # the policies' knobs default to what the system ships with

DAY = 86400.0
HORIZON = 30 * DAY  # a policy that leaves chunks behind this long is broken: fail loudly

# Relative session starts per hour of the day: quiet nights, office hours with a lunch dip.
OFFICE_PROFILE = (0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 1.0, 4.0, 8.0, 9.0, 8.0,
                  4.0, 7.0, 9.0, 8.0, 6.0, 3.0, 1.5, 1.2, 1.0, 0.8, 0.5, 0.4)
PROFILES = {"office": OFFICE_PROFILE, "flat": (1.0,) * 24}

# GPU instances: on-demand $/h in us-east-1 and speed relative to a T4 (the design's table).
INSTANCES = {
    "g4dn.xlarge": (0.526, 1.0),  # T4
    "g6.xlarge": (0.80, 1.5),  # L4 (speed less certain)
    "g5.xlarge": (1.006, 2.0),  # A10G
}


@dataclass(frozen=True)
class Workload:
    """The day of uploads; the same sessions are cut into chunks of any length."""

    sessions: int = 300
    seed: int = 1
    profile: tuple[float, ...] = OFFICE_PROFILE
    burst_share: float = 0.4  # sessions starting within burst_spread_s after the top of the hour
    burst_spread_s: float = 300.0
    backfill_share: float = 0.05  # sessions uploaded all at once when they end
    backfill_gap_s: float = 1.0  # between a backfilled session's uploads
    session_median_min: float = 30.0  # log-normal session length
    session_sigma: float = 0.6
    session_min_min: float = 2.0
    session_max_min: float = 240.0

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError("sessions must be >= 1")
        if len(self.profile) != 24 or min(self.profile) < 0 or sum(self.profile) <= 0:
            raise ValueError("profile needs 24 non-negative hourly weights, not all 0")
        for name in ("burst_share", "backfill_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")


@dataclass(frozen=True)
class CostParams:
    """Every price, speed and policy knob of the model (the design's defaults)."""

    # GPU
    gpu_hourly_usd: float = 0.526  # g4dn.xlarge (T4) on demand, us-east-1
    price_factor: float = 1.0  # spot is about 0.4
    billing_minimum_s: float = 60.0  # per-second billing, 60 s minimum per start
    cold_start_s: float = 120.0  # start to first transcript; 300 s when a ~10 GB image is pulled
    gpu_speed_x: float = 25.0  # Whisper large-v3 batched on a T4
    chunk_overhead_s: float = 0.0  # fixed GPU time per chunk (S3 read/write, decode)
    # the router Lambda
    lambda_ms: float = 200.0
    lambda_cold_ms: float = 400.0
    lambda_memory_mb: float = 256.0
    lambda_usd_per_million: float = 0.20
    lambda_usd_per_gb_s: float = 0.0000167
    lambda_idle_s: float = 600.0  # an idle Lambda container is recycled after this long
    probe_timeout_s: float = 2.0  # health probe of a server that is down (ROUTER_HEALTH_TIMEOUT_S)
    # SQS
    sqs_usd_per_million: float = 0.40
    sqs_requests_per_chunk: int = 3  # send, receive, delete
    sqs_poll_interval_s: float = 11.0  # an idle consumer's long polls (kombu's defaults)
    # AWS Transcribe, the managed comparison
    transcribe_usd_per_min: float = 0.024
    transcribe_minimum_s: float = 15.0
    # the policies
    chunk_s: float = 30.0
    scaling_interval_s: float = 60.0
    max_workers: int = _DEFAULTS["max_gpu_workers"].default  # MAX_GPU_WORKERS
    chunks_per_worker: int = _DEFAULTS["chunks_per_worker"].default  # CHUNKS_PER_WORKER
    scale_in_ticks: int = 1  # scale in only after the rule asked for fewer workers this many ticks running
    drain_hour: float = 0.0
    server_start_hour: float = 8.0  # hybrid: the server is ready at this hour
    server_idle_timeout_s: float = 900.0  # hybrid: the server box stops after this long idle
    worker_idle_timeout_s: float = 120.0  # drain workers stop after this long with an empty queue
    always_on_gpus: int = 1
    server_consumes_queue: bool = True

    def __post_init__(self) -> None:
        positive = ("gpu_speed_x", "chunk_s", "scaling_interval_s", "sqs_poll_interval_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name, value in asdict(self).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if min(self.chunks_per_worker, self.always_on_gpus, self.scale_in_ticks) < 1:
            raise ValueError("chunks_per_worker, always_on_gpus and scale_in_ticks must be >= 1")

    @property
    def gpu_usd_per_s(self) -> float:
        return self.gpu_hourly_usd * self.price_factor / 3600.0


@dataclass(frozen=True)
class Policy:
    name: str
    label: str
    server: str  # "none", "always" (24 h), "office" (ready at server_start_hour, stops when idle)
    drain: bool  # the nightly drain starts workers for the backlog
    queue_depth: bool  # the scaler sets the worker count every scaling_interval_s
    probe: bool  # the router probes the server before queueing


POLICIES = {p.name: p for p in (
    Policy("always-on", "GPU always on", "always", drain=True, queue_depth=False, probe=True),
    Policy("queue-midnight", "queue only, midnight drain", "none", drain=True, queue_depth=False, probe=False),
    Policy("hybrid-idle", "hybrid, idle shutdown", "office", drain=True, queue_depth=False, probe=True),
    Policy("hybrid-queue-depth", "hybrid, queue-depth scaling", "office", drain=False, queue_depth=True,
           probe=True),
    Policy("queue-depth", "queue only, queue-depth scaling", "none", drain=False, queue_depth=True,
           probe=False),
)}


@dataclass(frozen=True)
class Session:
    start: float
    length: float
    backfill: bool


@dataclass(frozen=True)
class Chunks:
    """A day's chunks, sorted by upload time."""

    upload: list[float]
    duration: list[float]
    session: list[int]

    @property
    def audio_s(self) -> float:
        return math.fsum(self.duration)

    def __len__(self) -> int:
        return len(self.upload)


def make_sessions(w: Workload) -> list[Session]:
    """The day's sessions from the seeded arrival pattern (independent of the chunk length)."""
    rng = random.Random(w.seed)
    hours = rng.choices(range(24), weights=w.profile, k=w.sessions)
    sessions = []
    for hour in hours:
        burst = rng.random() < w.burst_share
        offset = rng.uniform(0, w.burst_spread_s) if burst else rng.uniform(0, 3600)
        minutes = rng.lognormvariate(math.log(w.session_median_min), w.session_sigma)
        minutes = min(max(minutes, w.session_min_min), w.session_max_min)
        sessions.append(Session(hour * 3600 + offset, minutes * 60, rng.random() < w.backfill_share))
    return sessions


def make_chunks(sessions: list[Session], chunk_s: float, backfill_gap_s: float = 1.0) -> Chunks:
    """Cut each session into chunks; a live recorder uploads each chunk as it ends."""
    rows = []
    for n, s in enumerate(sessions):
        count = math.ceil(s.length / chunk_s - 1e-9)
        for i in range(count):
            duration = min(chunk_s, s.length - i * chunk_s)
            at = s.start + s.length + i * backfill_gap_s if s.backfill else s.start + i * chunk_s + duration
            rows.append((at, duration, n))
    rows.sort()
    return Chunks([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def billed_seconds(start: float, stop: float, minimum_s: float) -> float:
    """Per-second billing with a minimum per start."""
    return max(math.ceil(stop - start - 1e-9), minimum_s)


@dataclass
class Instance:
    id: int
    kind: str  # "server", "drain" or "asg"
    start: float
    ready: float
    consumer: bool  # takes chunks from the queue
    idle_timeout: float | None  # stops itself after this long idle; None: never
    stop: float | None = None
    busy: bool = False
    idle_since: float = 0.0
    idle_s: float = 0.0
    busy_s: float = 0.0


@dataclass
class PolicyResult:
    policy: str
    gpu_hours: float
    usd_gpu: float
    usd_lambda: float
    usd_sqs: float
    latency: list[float]
    counts: list[int]
    direct: int
    instances: list[Instance]
    max_workers_seen: int
    scaler_calls: int

    @property
    def usd(self) -> float:
        return self.usd_gpu + self.usd_lambda + self.usd_sqs

    def summary(self) -> dict[str, float | int]:
        return {
            "gpu_hours": round(self.gpu_hours, 3),
            "usd": round(self.usd, 4),
            "usd_gpu": round(self.usd_gpu, 4),
            "usd_lambda": round(self.usd_lambda, 4),
            "usd_sqs": round(self.usd_sqs, 4),
            "latency_p50_s": round(percentile(self.latency, 50), 2),
            "latency_p95_s": round(percentile(self.latency, 95), 2),
            "latency_max_s": round(max(self.latency), 2),
            "direct_share": round(self.direct / len(self.counts), 4),
            "gpu_starts": len(self.instances),
            "max_workers": self.max_workers_seen,
        }


class _LambdaPool:
    """Warm and cold router containers: a container serves one invocation at a time."""

    def __init__(self, p: CostParams) -> None:
        self.p = p
        self.free: list[list[float]] = []  # [free_at, ...] of warm containers
        self.invocations = 0
        self.billed_s = 0.0

    def invoke(self, t: float) -> tuple[list[float], float]:
        """Take a container at t; return it and the init delay (s)."""
        self.invocations += 1
        self.free = [c for c in self.free if c[0] > t or t - c[0] <= self.p.lambda_idle_s]
        for c in self.free:
            if c[0] <= t:
                c[0] = math.inf
                return c, 0.0
        c = [math.inf]
        self.free.append(c)
        return c, self.p.lambda_cold_ms / 1000.0

    def finish(self, container: list[float], started: float, ended: float) -> None:
        container[0] = ended
        self.billed_s += ended - started

    @property
    def usd(self) -> float:
        p = self.p
        return (self.invocations * p.lambda_usd_per_million / 1e6
                + self.billed_s * p.lambda_memory_mb / 1024.0 * p.lambda_usd_per_gb_s)


# event kinds, in the order they win a tie at the same instant
_DONE, _READY, _UPLOAD, _DECIDE, _ENQUEUE, _IDLE, _DRAIN, _SERVER, _TICK = range(9)


class _Simulation:
    def __init__(self, policy: Policy, chunks: Chunks, p: CostParams) -> None:
        self.policy, self.chunks, self.p = policy, chunks, p
        n = len(chunks)
        self.counts = [0] * n
        self.done_at = [math.nan] * n
        self.remaining = n
        self.queue: deque[int] = deque()
        self.in_flight = 0
        self.live: list[Instance] = []
        self.instances: list[Instance] = []
        self.events: list[tuple[float, int, int, object]] = []
        self.seq = 0
        self.lambdas = _LambdaPool(p)
        self.sqs_requests = 0
        self.direct = 0
        self.max_workers_seen = 0
        self.scaler_calls = 0
        self.low_ticks = 0
        self.invocation: dict[int, tuple[list[float], float]] = {}

    # --- plumbing --------------------------------------------------------------------------
    def push(self, t: float, kind: int, payload: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, payload))

    def proc_s(self, i: int) -> float:
        return self.chunks.duration[i] / self.p.gpu_speed_x + self.p.chunk_overhead_s

    def launch(self, t: float, kind: str, consumer: bool, idle_timeout: float | None, ready: float | None = None):
        ready = t + self.p.cold_start_s if ready is None else ready
        inst = Instance(len(self.instances), kind, t, ready, consumer, idle_timeout)
        self.instances.append(inst)
        self.live.append(inst)
        self.max_workers_seen = max(self.max_workers_seen, sum(1 for i in self.live if i.kind != "server"))
        self.push(ready, _READY, inst)
        return inst

    def stop(self, inst: Instance, t: float) -> None:
        if t >= inst.ready and not inst.busy:
            inst.idle_s += t - inst.idle_since
        inst.stop = t
        self.live.remove(inst)

    def start_work(self, inst: Instance, i: int, t: float, queued: bool) -> float:
        inst.busy = True
        inst.idle_s += t - inst.idle_since
        done = t + self.proc_s(i)
        inst.busy_s += done - t
        self.push(done, _DONE, (inst, i, queued))
        return done

    def pull(self, inst: Instance, t: float) -> bool:
        """An idle consumer takes the next queued chunk (its long poll returns at once)."""
        if inst.consumer and self.queue:
            self.in_flight += 1
            self.start_work(inst, self.queue.popleft(), t, queued=True)
            return True
        return False

    def became_idle(self, inst: Instance, t: float) -> None:
        inst.busy = False
        inst.idle_since = t
        if not self.pull(inst, t) and inst.idle_timeout is not None:
            self.push(t + inst.idle_timeout, _IDLE, (inst, t))

    def ready_server(self) -> Instance | None:
        for inst in self.live:
            if inst.kind == "server" and inst.ready <= self.now:
                return inst
        return None

    def active(self) -> bool:
        return self.remaining > 0

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> PolicyResult:
        p, policy = self.p, self.policy
        for i, t in enumerate(self.chunks.upload):
            self.push(t, _UPLOAD, i)
        if policy.server == "always":
            for _ in range(p.always_on_gpus):
                self.launch(-p.cold_start_s, "server", p.server_consumes_queue, None, ready=0.0)
        if policy.server == "office":
            self.push(max(0.0, p.server_start_hour * 3600 - p.cold_start_s), _SERVER)
        if policy.drain:
            self.push(p.drain_hour * 3600, _DRAIN)
        if policy.queue_depth:
            self.push(0.0, _TICK)

        self.now = 0.0
        while self.events:
            t, kind, _, payload = heapq.heappop(self.events)
            if t > HORIZON:
                raise RuntimeError(f"{policy.name}: {self.remaining} chunks left after {HORIZON / DAY:.0f} days")
            self.now = t
            getattr(self, _HANDLERS[kind])(t, payload)

        end = max(DAY, self.now)
        for inst in list(self.live):  # only always-on servers are still up
            self.stop(inst, end)
        return self.result()

    # --- handlers --------------------------------------------------------------------------
    def on_upload(self, t: float, i: object) -> None:
        container, init = self.lambdas.invoke(t)
        self.invocation[i] = (container, t)
        self.push(t + init + self.p.lambda_ms / 1000.0, _DECIDE, i)

    def on_decide(self, t: float, i: int) -> None:
        container, invoked = self.invocation.pop(i)
        if self.policy.probe:
            server = self.ready_server()
            if server is not None and not server.busy:
                self.direct += 1
                done = self.start_work(server, i, t, queued=False)  # the router waits for the transcript
                self.lambdas.finish(container, invoked, done)
                return
            if server is None:  # the probe times out; busy (503) answers at once
                self.lambdas.finish(container, invoked, t + self.p.probe_timeout_s)
                self.push(t + self.p.probe_timeout_s, _ENQUEUE, i)
                return
        self.lambdas.finish(container, invoked, t)
        self.on_enqueue(t, i)

    def on_enqueue(self, t: float, i: int) -> None:
        self.sqs_requests += self.p.sqs_requests_per_chunk
        self.queue.append(i)
        for inst in self.live:
            if inst.consumer and not inst.busy and inst.ready <= t:
                self.pull(inst, t)
                break

    def on_done(self, t: float, payload: tuple[Instance, int, bool]) -> None:
        inst, i, queued = payload
        self.counts[i] += 1
        self.done_at[i] = t
        self.remaining -= 1
        self.in_flight -= queued  # the worker deletes the message
        self.became_idle(inst, t)

    def on_ready(self, t: float, inst: Instance) -> None:
        if inst.stop is None:
            self.became_idle(inst, t)

    def on_idle(self, t: float, payload: tuple[Instance, float]) -> None:
        inst, since = payload
        if inst.stop is None and not inst.busy and inst.idle_since == since:
            self.stop(inst, t)

    def on_drain(self, t: float, _: object) -> None:
        workers = [i for i in self.live if i.kind == "drain"]
        want = scaling.desired_workers(len(self.queue), self.in_flight, self.p.max_workers, self.p.chunks_per_worker)
        self.scaler_calls += 1
        for _ in range(want - len(workers)):
            self.launch(t, "drain", True, self.p.worker_idle_timeout_s)
        if self.active():
            self.push(t + DAY, _DRAIN)

    def on_server(self, t: float, _: object) -> None:
        if self.active() and not any(i.kind == "server" for i in self.live):
            self.launch(t, "server", self.p.server_consumes_queue, self.p.server_idle_timeout_s)
        if self.active():
            self.push(t + DAY, _SERVER)

    def on_tick(self, t: float, _: object) -> None:
        p = self.p
        fleet = [i for i in self.live if i.kind == "asg"]
        self.sqs_requests += 1  # GetQueueAttributes
        self.scaler_calls += 1
        want = scaling.desired_workers(len(self.queue), self.in_flight, p.max_workers, p.chunks_per_worker)
        if want > len(fleet):
            for _ in range(want - len(fleet)):
                self.launch(t, "asg", True, None)
        self.low_ticks = self.low_ticks + 1 if want < len(fleet) else 0
        if want < len(fleet) and self.low_ticks >= p.scale_in_ticks:
            # busy workers are protected from scale-in; idle ones go first, then the newest booting
            idle = [i for i in fleet if i.ready <= t and not i.busy]
            booting = sorted((i for i in fleet if i.ready > t), key=lambda i: -i.start)
            for inst in (idle + booting)[: len(fleet) - want]:
                self.stop(inst, t)
        if self.active() or any(i.kind == "asg" for i in self.live):
            self.push(t + p.scaling_interval_s, _TICK)

    # --- accounting ------------------------------------------------------------------------
    def result(self) -> PolicyResult:
        p = self.p
        billed = 0.0
        for inst in self.instances:
            if self.policy.server == "always" and inst.kind == "server":
                billed += DAY  # always on: the whole day, every day
            else:
                billed += billed_seconds(inst.start, inst.stop, p.billing_minimum_s)
        polls = sum(i.idle_s for i in self.instances if i.consumer) / p.sqs_poll_interval_s
        latency = [d - u for d, u in zip(self.done_at, self.chunks.upload, strict=True)]
        return PolicyResult(
            policy=self.policy.name,
            gpu_hours=billed / 3600.0,
            usd_gpu=billed * p.gpu_usd_per_s,
            usd_lambda=self.lambdas.usd,
            usd_sqs=(self.sqs_requests + polls) * p.sqs_usd_per_million / 1e6,
            latency=latency,
            counts=self.counts,
            direct=self.direct,
            instances=self.instances,
            max_workers_seen=self.max_workers_seen,
            scaler_calls=self.scaler_calls,
        )


_HANDLERS = {_DONE: "on_done", _READY: "on_ready", _UPLOAD: "on_upload", _DECIDE: "on_decide",
             _ENQUEUE: "on_enqueue", _IDLE: "on_idle", _DRAIN: "on_drain", _SERVER: "on_server",
             _TICK: "on_tick"}


def simulate(policy: str | Policy, chunks: Chunks, params: CostParams) -> PolicyResult:
    """Run one policy over the day's chunks."""
    return _Simulation(POLICIES[policy] if isinstance(policy, str) else policy, chunks, params).run()


def transcribe_usd(chunks: Chunks, p: CostParams) -> dict[str, float]:
    """AWS Transcribe batch: per second, a minimum per request, one request per chunk; plus the router."""
    billed = math.fsum(max(d, p.transcribe_minimum_s) for d in chunks.duration)
    pool = _LambdaPool(p)
    for t in chunks.upload:
        container, init = pool.invoke(t)
        pool.finish(container, t, t + init + p.lambda_ms / 1000.0)
    fee = billed / 60.0 * p.transcribe_usd_per_min
    return {"usd": round(fee + pool.usd, 4), "usd_transcribe": round(fee, 4), "usd_lambda": round(pool.usd, 4)}


@dataclass
class Report:
    params: CostParams
    chunks: Chunks
    results: dict[str, PolicyResult] = field(default_factory=dict)

    @property
    def minimum_gpu_hours(self) -> float:
        return self.chunks.audio_s / self.params.gpu_speed_x / 3600.0

    def to_json(self) -> dict[str, object]:
        return {
            "minimum_gpu_hours": round(self.minimum_gpu_hours, 3),
            "minimum_usd": round(self.minimum_gpu_hours * 3600 * self.params.gpu_usd_per_s, 4),
            "audio_hours": round(self.chunks.audio_s / 3600.0, 2),
            "chunks": len(self.chunks),
            "policies": {name: r.summary() for name, r in self.results.items()},
            "managed": {"aws-transcribe": transcribe_usd(self.chunks, self.params)},
        }


def run(params: CostParams, sessions: list[Session], workload: Workload, policies=tuple(POLICIES)) -> Report:
    """Every policy over the same chunks."""
    chunks = make_chunks(sessions, params.chunk_s, workload.backfill_gap_s)
    report = Report(params, chunks)
    for name in policies:
        report.results[name] = simulate(name, chunks, params)
    return report
