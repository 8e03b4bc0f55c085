"""Beat, in one place: the schedule (the midnight drain, the session sweeper, the GPU scaler) and the
process that runs it (`stt-router beat`; its command line is in `tasks.cli`, beside `stt-router drain`).

- `drain`: `crontab(minute=DRAIN_MINUTE, hour=DRAIN_HOUR)` in `TIMEZONE` (the app's time zone;
  Celery's crontab follows it through DST: a wall time that does not exist that night runs at the
  first minute after it, one that happens twice runs once). Never plain `crontab(hour=0)`: its
  minute is `*`, so it would fire every minute of that hour.
- `sweep`: every `SWEEP_INTERVAL_S`, combines sessions whose completion trigger was lost.
- `scale`: every minute, the queue-depth rule sets the GPU fleet (`SCALING_POLICY=queue-depth`
  with `CAPACITY_MODE` `asg` or `ec2`); with `asg` under the midnight policy it only lowers the
  group again once the queue is empty (a worker that terminates itself would be replaced otherwise).

The scheduler is RedBeat: the schedule lives in Redis and one Redis lock makes every other beat a
standby, so exactly one beat sends (see `beat_config`). Every entry goes to `CONTROL_QUEUE`, where
`stt-router beat`'s own small worker runs it: at midnight no GPU worker is up to run a drain.

`stt-router beat` is one always-on process without a GPU: a Celery worker consuming only
`CONTROL_QUEUE` (drain, sweeper, scaler; prefork, 2 processes so a long drain never delays the
scaler) with beat embedded as a child process. Run it on two machines for a standby: RedBeat's Redis
lock lets one beat send while the other waits for the lock, and both workers share the control
queue. If the beat child dies (e.g. it lost its lock during a Redis outage), the whole process exits
non-zero so its supervisor restarts it, rather than living on as a worker without a beat.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery import Celery, signals
from celery.schedules import crontab, schedule

from tasks.broker import create_or_update_queue, ensure_queues, sqs_client
from tasks.celery_app import DRAIN_TASK, SCALE_TASK, SWEEP_TASK, app, is_sqs, predefined_queues
from tasks.monitoring import worker_event_options
from transcription.settings import Settings, get_settings

log = logging.getLogger("beat")

SCALE_INTERVAL_S = 60
LOCK_TIMEOUT_FACTOR = 5  # RedBeat's default: the lock lapses after 5 beat intervals without a tick
BEAT_WATCH_INTERVAL_S = 2.0


def check(settings: Settings) -> list[str]:
    """What makes this schedule wrong or useless, as readable problems (empty: fine)."""
    s = settings
    problems = []
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"TIMEZONE={s.timezone!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)")
    if not 0 <= s.drain_hour <= 23:
        problems.append(f"DRAIN_HOUR={s.drain_hour} is not an hour (0-23)")
    if not 0 <= s.drain_minute <= 59:
        problems.append(f"DRAIN_MINUTE={s.drain_minute} is not a minute (0-59)")
    if s.sweep_interval_s < 1:
        problems.append(f"SWEEP_INTERVAL_S={s.sweep_interval_s} must be at least 1")
    if s.max_gpu_workers < 0:
        problems.append(f"MAX_GPU_WORKERS={s.max_gpu_workers} must not be negative")
    if s.capacity_mode == "asg" and not s.asg_name:
        problems.append("CAPACITY_MODE=asg needs ASG_NAME")
    if s.capacity_mode == "ec2" and not s.ec2_instance_ids:
        problems.append("CAPACITY_MODE=ec2 needs EC2_INSTANCE_IDS")
    if s.scaling_policy == "queue-depth" and s.capacity_mode == "none":
        problems.append("SCALING_POLICY=queue-depth needs CAPACITY_MODE=asg (or ec2) to start anything")
    return problems


def scales(settings: Settings) -> bool:
    """Whether the every-minute scaler has anything to do with these settings."""
    return settings.capacity_mode == "asg" or (settings.capacity_mode == "ec2"
                                               and settings.scaling_policy == "queue-depth")


def drain_crontab(settings: Settings, app: Celery | None = None,
                  nowfun: Callable[[], datetime] | None = None) -> crontab:
    return crontab(minute=settings.drain_minute, hour=settings.drain_hour, app=app, nowfun=nowfun)


def build_schedule(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """`beat_schedule`: name -> entry. Every entry runs on CONTROL_QUEUE; stale ticks expire."""
    s = settings or get_settings()
    control = {"queue": s.control_queue}
    entries: dict[str, dict[str, Any]] = {
        "drain": {"task": DRAIN_TASK, "schedule": drain_crontab(s), "kwargs": {"bucket": s.s3_bucket},
                  "options": {**control, "expires": 12 * 3600}},
        "sweep": {"task": SWEEP_TASK, "schedule": schedule(timedelta(seconds=s.sweep_interval_s)),
                  "kwargs": {"bucket": s.s3_bucket}, "options": {**control, "expires": s.sweep_interval_s}},
    }
    if scales(s):
        entries["scale"] = {"task": SCALE_TASK, "schedule": schedule(timedelta(seconds=SCALE_INTERVAL_S)),
                            "options": {**control, "expires": SCALE_INTERVAL_S}}
    return entries


def beat_config(settings: Settings | None = None) -> dict[str, Any]:
    """The Celery settings beat runs with: the schedule, RedBeat and its lock."""
    s = settings or get_settings()
    return {
        "beat_schedule": build_schedule(s),
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "beat_max_loop_interval": s.beat_max_interval_s,
        # a drain missed while beat was down runs when it comes back within this long; a beat
        # started for the first time at 14:00 does not drain at once (RedBeat would: never run = due)
        "beat_cron_starting_deadline": max(1, s.drain_catch_up_s),
        "redbeat_redis_url": s.redis_url,
        "redbeat_key_prefix": s.beat_key_prefix,
        "redbeat_lock_timeout": max(5, round(s.beat_max_interval_s * LOCK_TIMEOUT_FACTOR)),
        # retry Redis outages for ever instead of letting beat die (the lock then decides who goes on)
        "redbeat_redis_options": {"retry_period": -1, "socket_timeout": 10, "socket_connect_timeout": 5},
    }


def next_drains(settings: Settings | None = None, now: datetime | None = None, count: int = 3) -> list[datetime]:
    """The next `count` drain times after `now`, in TIMEZONE, as beat computes them."""
    s = settings or get_settings()
    tz = ZoneInfo(s.timezone)
    app = Celery(set_as_current=False)
    app.conf.update(timezone=s.timezone, enable_utc=True)
    at = (now or datetime.now(UTC)).astimezone(UTC)
    runs = []
    for _ in range(count):
        cron = drain_crontab(s, app, nowfun=partial(at.astimezone, tz))
        # aware arithmetic in UTC: adding a timedelta to a zoned datetime would be wall-clock arithmetic
        nxt = at + cron.remaining_estimate(at.astimezone(tz))
        runs.append(nxt.astimezone(tz))
        at = nxt + timedelta(seconds=1)
    return runs


def describe(settings: Settings | None = None, now: datetime | None = None) -> list[str]:
    """The schedule in words, for `stt-router beat --show` and beat's start-up log."""
    s = settings or get_settings()
    lines = [f"drain: {s.drain_hour:02d}:{s.drain_minute:02d} {s.timezone}, next "
             + ", ".join(t.isoformat(timespec="minutes") for t in next_drains(s, now)),
             f"sweep: every {s.sweep_interval_s} s"]
    if scales(s):
        lines.append(f"scale: every {SCALE_INTERVAL_S} s ({s.scaling_policy}, {s.capacity_mode}, "
                     f"at most {s.max_gpu_workers} workers, {s.chunks_per_worker} chunks per worker)")
    else:
        lines.append(f"scale: off ({s.scaling_policy}, CAPACITY_MODE={s.capacity_mode})")
    lines.append(f"queue: {s.control_queue}; lock: {s.beat_key_prefix}:lock in {s.redis_url.split('@')[-1]}")
    return lines


# --- the process: beat and the small worker that runs beat's tasks ----------------------------

class BeatSettingsError(Exception):
    """Settings beat cannot run with; the message says which and why."""


def prepare(s: Settings) -> None:
    """Refuse bad settings; create the SQS queues when they are not predefined."""
    problems = check(s)
    if is_sqs(s) and predefined_queues(s) and not s.sqs_control_queue_url:
        problems.append(f"SQS_QUEUE_URL is set but SQS_CONTROL_QUEUE_URL is not: the control queue "
                        f"{s.control_queue!r} must be predefined too")
    if problems:
        raise BeatSettingsError("; ".join(problems))
    if is_sqs(s) and not predefined_queues(s):
        ensure_queues(s)  # the drain publishes to `transcribe`: give it its redrive policy first
        create_or_update_queue(sqs_client(s), s.control_queue, {"VisibilityTimeout": str(s.visibility_timeout_s)})


def _watch_beat(worker: Any, died: threading.Event, stopping: threading.Event) -> None:
    """Stop the worker (SIGTERM to this process: a warm shutdown) when the embedded beat has died."""
    while not stopping.wait(BEAT_WATCH_INTERVAL_S):
        beat = getattr(worker, "beat", None)
        if beat is None or getattr(beat, "pid", None) is None or beat.is_alive():
            continue
        if stopping.is_set():  # the worker is stopping and took beat with it
            return
        log.error("beat_died exitcode=%s: stopping so that a supervisor restarts beat", beat.exitcode)
        died.set()
        os.kill(os.getpid(), signal.SIGTERM)
        return


def run_beat(*, concurrency: int = 2, loglevel: str = "INFO", hostname: str | None = None) -> int:
    """Run beat and the control worker in this process until stopped; the exit code."""
    s = get_settings()
    prepare(s)
    app.conf.update(beat_config(s))
    worker = app.Worker(
        hostname=hostname or f"beat@{socket.gethostname()}",
        pool_cls="prefork",
        concurrency=concurrency,
        queues=[s.control_queue],
        loglevel=loglevel,
        beat=True,
        scheduler="redbeat.RedBeatScheduler",
        without_gossip=True,
        without_mingle=True,
        **worker_event_options(s),  # on SQS, task events for Flower go over Redis, as a GPU worker's do
    )
    died, stopping = threading.Event(), threading.Event()

    def _stopping(**_: Any) -> None:
        stopping.set()

    def _beat_started(**_: Any) -> None:  # in the beat child: its pid, for operators (and the tests)
        log.info("beat_process pid=%d", os.getpid())

    signals.worker_shutting_down.connect(_stopping, weak=False)
    signals.beat_embedded_init.connect(_beat_started, weak=False)
    threading.Thread(target=_watch_beat, args=(worker, died, stopping), name="beat-watch", daemon=True).start()
    try:
        worker.start()
    finally:
        stopping.set()
    return 1 if died.is_set() else (worker.exitcode or 0)

