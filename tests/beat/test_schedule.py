"""The beat schedule as objects: the drain at DRAIN_HOUR:DRAIN_MINUTE in TIMEZONE (checked with a
fixed "now" around DST changes and in non-UTC zones), once a day, stored by RedBeat without losing
anything, the sweeper and scaler entries, RedBeat's lock settings and the routes to CONTROL_QUEUE.
No services: these are Celery's and RedBeat's own schedule objects."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab, schedule
from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder

import beat_schedule
from tasks.celery_app import CONTROL_TASKS, DRAIN_TASK, SCALE_TASK, SWEEP_TASK, TRANSCRIBE_TASK, make_app
from tests.support.services import VENV_BIN
from transcription.settings import Settings


def local(zone: str, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def settings(**kw) -> Settings:
    return Settings(**{"celery_broker_url": "sqs://", **kw})


def test_drain_is_one_minute_of_one_hour_not_every_minute_of_it() -> None:
    cron = beat_schedule.build_schedule(settings(drain_hour=0, drain_minute=0))["drain"]["schedule"]
    assert isinstance(cron, crontab)
    assert cron.hour == {0} and cron.minute == {0}  # plain crontab(hour=0) would have 60 minutes
    assert len(crontab(hour=0).minute) == 60
    later = beat_schedule.build_schedule(settings(drain_hour=3, drain_minute=15))["drain"]["schedule"]
    assert later.hour == {3} and later.minute == {15}


@pytest.mark.parametrize(("zone", "now", "expected"), [
    ("UTC", "2026-06-01T23:59:30", ["2026-06-02T00:00:00+00:00", "2026-06-03T00:00:00+00:00"]),
    # +05:30: midnight in Kolkata is 18:30 UTC the day before
    ("Asia/Kolkata", "2026-06-01T23:30:00", ["2026-06-02T00:00:00+05:30", "2026-06-03T00:00:00+05:30"]),
    # spring forward (02:00 -> 03:00 on 29 March): the night is 23 h long, the drain still at midnight
    ("Europe/Berlin", "2026-03-28T12:00:00", ["2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"]),
    # fall back (1 November): 25 h between the drains, each at local midnight
    ("America/New_York", "2026-10-31T12:00:00", ["2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"]),
    # Lord Howe moves by 30 minutes (+11:00 -> +10:30 on 5 April)
    ("Australia/Lord_Howe", "2026-04-04T12:00:00", ["2026-04-05T00:00:00+11:00", "2026-04-06T00:00:00+10:30"]),
    # Chile springs forward at midnight: 00:00 does not exist on 6 September, the drain runs at 01:00
    ("America/Santiago", "2026-09-05T12:00:00", ["2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"]),
])
def test_next_drain_is_midnight_in_the_configured_zone(zone, now, expected) -> None:
    runs = beat_schedule.next_drains(settings(timezone=zone), now=local(zone, now), count=2)
    assert [r.isoformat() for r in runs] == expected
    assert all(r.tzinfo is not None and str(r.tzinfo) == zone for r in runs)


def test_the_same_wall_time_in_two_zones_is_two_different_instants() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    utc = beat_schedule.next_drains(settings(timezone="UTC"), now=now, count=1)[0]
    kolkata = beat_schedule.next_drains(settings(timezone="Asia/Kolkata"), now=now, count=1)[0]
    assert utc.astimezone(UTC) - kolkata.astimezone(UTC) == timedelta(hours=5, minutes=30)


@pytest.mark.parametrize(("zone", "start", "expected"), [
    # 02:30 does not exist on the spring day: the drain runs at the next valid minute, once
    ("Europe/Berlin", "2026-03-28T12:00:00",
     ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]),
    # 02:30 happens twice on the autumn day: the drain runs once, at the first
    ("Europe/Berlin", "2026-10-24T12:00:00",
     ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]),
])
def test_beat_fires_once_a_day_through_dst(zone, start, expected) -> None:
    """Beat's own loop, minute by minute: `is_due(last_run_at)` on the schedule as RedBeat stores it."""
    s = settings(timezone=zone, drain_hour=2, drain_minute=30)
    app = make_app(s)
    app.conf.update(beat_schedule.beat_config(s))
    stored = json.dumps(beat_schedule.build_schedule(s)["drain"]["schedule"], cls=RedBeatJSONEncoder)
    cron = json.loads(stored, cls=RedBeatJSONDecoder)  # what a beat reads back from Redis
    cron.app = app
    tz = ZoneInfo(zone)
    clock = local(zone, start).astimezone(UTC)
    cron.nowfun = lambda: clock.astimezone(tz)
    last_run_at, fired = clock.astimezone(tz), []
    for _ in range(3 * 24 * 60):
        due, _next = cron.is_due(last_run_at)
        if due:
            last_run_at = clock.astimezone(tz)
            fired.append(last_run_at.isoformat())
        clock += timedelta(minutes=1)
    assert fired == expected


def test_first_start_does_not_drain_but_a_missed_drain_is_caught_up() -> None:
    """RedBeat treats a never-run entry as due; the starting deadline keeps a 14:00 first start from
    draining at once, while a beat that was down at midnight and back at 02:00 still drains."""
    zone = "Europe/Berlin"
    s = settings(timezone=zone, drain_catch_up_s=6 * 3600)
    app = make_app(s)
    app.conf.update(beat_schedule.beat_config(s))
    cron = beat_schedule.drain_crontab(s, app)
    never = datetime(1, 1, 2, tzinfo=ZoneInfo(zone))  # what RedBeat passes for "never run"

    cron.nowfun = lambda: local(zone, "2026-06-01T14:00:00")
    assert not cron.is_due(never).is_due
    cron.nowfun = lambda: local(zone, "2026-06-02T02:00:00")
    assert cron.is_due(local(zone, "2026-06-01T00:00:05")).is_due  # yesterday's ran, today's was missed
    cron.nowfun = lambda: local(zone, "2026-06-02T09:00:00")  # too late: wait for the next midnight
    assert not cron.is_due(local(zone, "2026-06-01T00:00:05")).is_due


def test_entries_go_to_the_control_queue_and_stale_ticks_expire() -> None:
    s = settings(control_queue="ctl", sweep_interval_s=120, s3_bucket="b1")
    entries = beat_schedule.build_schedule(s)
    assert set(entries) == {"drain", "sweep"}  # midnight policy, CAPACITY_MODE=none: no scaler
    assert entries["drain"]["task"] == DRAIN_TASK and entries["sweep"]["task"] == SWEEP_TASK
    assert all(e["options"]["queue"] == "ctl" for e in entries.values())
    assert entries["drain"]["kwargs"] == {"bucket": "b1"}
    sweep = entries["sweep"]["schedule"]
    assert isinstance(sweep, schedule) and sweep.run_every == timedelta(seconds=120)
    assert entries["sweep"]["options"]["expires"] == 120


@pytest.mark.parametrize(("policy", "mode", "has_scaler"), [
    ("midnight", "none", False),
    ("midnight", "ec2", False),  # EC2 workers stop themselves; nothing to lower
    ("midnight", "asg", True),  # lowers the group again once the queue is empty
    ("queue-depth", "asg", True),
    ("queue-depth", "ec2", True),
])
def test_scaler_entry(policy, mode, has_scaler) -> None:
    s = settings(scaling_policy=policy, capacity_mode=mode, asg_name="g", ec2_instance_ids=["i-1"])
    entries = beat_schedule.build_schedule(s)
    assert ("scale" in entries) is has_scaler
    if has_scaler:
        assert entries["scale"]["task"] == SCALE_TASK
        assert entries["scale"]["schedule"].run_every == timedelta(seconds=60)
        assert entries["scale"]["options"]["expires"] == 60


def test_redbeat_lock_and_keys_come_from_the_settings() -> None:
    s = settings(redis_url="redis://10.0.0.5:6379/2", beat_key_prefix="x:beat:", beat_max_interval_s=20)
    conf = beat_schedule.beat_config(s)
    assert conf["beat_scheduler"] == "redbeat.RedBeatScheduler"
    assert conf["redbeat_redis_url"] == "redis://10.0.0.5:6379/2"
    assert conf["redbeat_key_prefix"] == "x:beat:"
    assert conf["beat_max_loop_interval"] == 20 and conf["redbeat_lock_timeout"] == 100
    assert conf["redbeat_redis_options"]["retry_period"] == -1  # a Redis outage stalls beat, never kills it


def test_control_tasks_are_routed_to_the_control_queue_only() -> None:
    app = make_app(settings(control_queue="ctl", transcribe_queue="tq"))
    router = app.amqp.router
    for name in CONTROL_TASKS:
        assert router.route({}, name)["queue"].name == "ctl"
    assert router.route({}, TRANSCRIBE_TASK)["queue"].name == "tq"
    assert router.route({}, "tasks.combine_session")["queue"].name == "tq"


@pytest.mark.parametrize(("env", "problem"), [
    ({"TIMEZONE": "Mars/Olympus"}, "not an IANA time zone"),
    ({"DRAIN_HOUR": "24"}, "DRAIN_HOUR=24"),
    ({"DRAIN_MINUTE": "60"}, "DRAIN_MINUTE=60"),
    ({"CAPACITY_MODE": "asg"}, "needs ASG_NAME"),
    ({"CAPACITY_MODE": "ec2"}, "needs EC2_INSTANCE_IDS"),
    ({"SCALING_POLICY": "queue-depth"}, "needs CAPACITY_MODE"),
])
def test_bad_settings_are_refused_with_a_reason(env, problem) -> None:
    s = Settings(**{k.lower(): v for k, v in env.items()})
    assert any(problem in p for p in beat_schedule.check(s))
    # and `stt-router beat` refuses to start with it, saying why, before touching any service
    run = subprocess.run([str(VENV_BIN / "stt-router"), "beat"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and problem in run.stderr, run.stderr


def test_beat_show_prints_the_schedule_in_the_zone() -> None:
    env = {**os.environ, "TIMEZONE": "America/New_York", "DRAIN_HOUR": "1", "DRAIN_MINUTE": "30",
           "SWEEP_INTERVAL_S": "90", "CONTROL_QUEUE": "ctl-show"}
    run = subprocess.run([str(VENV_BIN / "stt-router"), "beat", "--show"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "drain: 01:30 America/New_York" in run.stdout
    nexts = run.stdout.split("next ", 1)[1].splitlines()[0].split(", ")
    assert len(nexts) == 3 and all(t.endswith(("T01:30-04:00", "T01:30-05:00")) for t in nexts)
    assert "sweep: every 90 s" in run.stdout and "ctl-show" in run.stdout
