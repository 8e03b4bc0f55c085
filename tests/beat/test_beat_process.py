"""Beat for real: two `stt-router beat` processes (RedBeat on the Redis at 127.0.0.1:6379, their
control workers on moto's SQS) with the drain set to the next minute in a non-UTC zone.

One drain fires, at that minute, from the one beat holding the lock; the sweeper queues the combine
of a session whose trigger was lost; the drain sets the Auto Scaling group (moto's: a GPU fleet
cannot exist here) from the backlog; `stt-router drain` reaches a running beat's worker; and when
the lock holder is killed, the standby takes the lock and carries on. No GPU worker runs here, so
what beat sent stays in this test's own transcribe queue, where the test reads it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tasks.broker import queue_url, sqs_client
from tests.support.services import VENV_BIN, ManagedProcess, unique, wait_for
from tests.support.worker import settings_for, worker_env
from transcription import layout
from transcription.transcript import ChunkTranscript, Segment

pytestmark = pytest.mark.timeout(400)

ZONE = "Asia/Kolkata"  # +05:30: a drain at local HH:MM is at a half-hour offset in UTC
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+: \w+/[\w-]+\] ", re.M)


def drain_minute(lead_s: float = 25) -> datetime:
    """The first whole local minute at least `lead_s` from now (time for both beats to start)."""
    t = datetime.now(ZoneInfo(ZONE)) + timedelta(seconds=lead_s)
    return (t + timedelta(minutes=1)).replace(second=0, microsecond=0)


def logged_at(output: str, needle: str) -> list[datetime]:
    """UTC times of the log lines containing `needle` (the beats log in UTC: TZ=UTC)."""
    times = []
    for line in output.splitlines():
        m = LOG_TIME.match(line)
        if m and needle in line:
            times.append(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC))
    return times


def queued_tasks(s) -> Counter:
    """(task name, first argument) of every message in the transcribe queue, each read once."""
    client = sqs_client(s)
    url = queue_url(s.transcribe_queue, s, client)
    seen: Counter = Counter()
    while msgs := client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=120,
                                         WaitTimeSeconds=1).get("Messages", []):
        for m in msgs:
            envelope = json.loads(base64.b64decode(m["Body"]))
            args = json.loads(base64.b64decode(envelope["body"]))[0]
            seen[(envelope["headers"]["task"], args[-1])] += 1
    return seen


def test_two_beats_one_drain_at_the_local_minute_and_a_standby_that_takes_over(moto) -> None:
    s3, asg, ec2 = moto.client("s3"), moto.client("autoscaling"), moto.client("ec2")
    bucket = unique("beat")
    s3.create_bucket(Bucket=bucket)
    template = unique("gpu-worker")
    ec2.create_launch_template(LaunchTemplateName=template, LaunchTemplateData={
        "ImageId": ec2.describe_images()["Images"][0]["ImageId"], "InstanceType": "g4dn.xlarge"})
    group = unique("gpu-workers")
    asg.create_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, MaxSize=4, DesiredCapacity=0,
                                  AvailabilityZones=["us-east-1a"], LaunchTemplate={"LaunchTemplateName": template})

    # x: a chunk nobody transcribed (the drain's work); y: transcribed and ended, its combine lost (the sweeper's)
    x, y = unique("x"), unique("y")
    s3.put_object(Bucket=bucket, Key=f"sessions/{x}/chunks/0.wav", Body=b"RIFF....")
    s3.put_object(Bucket=bucket, Key=f"sessions/{y}/chunks/0.wav", Body=b"RIFF....")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(y), Body=b'{"total_chunks": 1}')
    chunk = ChunkTranscript(session_id=y, chunk_index=0, source_key=f"sessions/{y}/chunks/0.wav", duration=1.0,
                            language="en", engine="faster-whisper", model="base",
                            segments=[Segment(start=0.0, end=1.0, text="hello")])
    s3.put_object(Bucket=bucket, Key=layout.chunk_transcript_key(y, 0), Body=chunk.model_dump_json().encode())

    at = drain_minute()
    env = worker_env(moto, "sqs", S3_BUCKET=bucket, CONTROL_QUEUE=unique("control"),
                     BEAT_KEY_PREFIX=unique("stt:beat") + ":", BEAT_MAX_INTERVAL_S="1", SWEEP_INTERVAL_S="2",
                     TIMEZONE=ZONE, DRAIN_HOUR=str(at.hour), DRAIN_MINUTE=str(at.minute),
                     SCALING_POLICY="queue-depth", CAPACITY_MODE="asg", ASG_NAME=group, MAX_GPU_WORKERS="3", TZ="UTC")
    s = settings_for(env)
    beats = [ManagedProcess(f"beat-{n}", [str(VENV_BIN / "stt-router"), "beat"], env=env) for n in (1, 2)]
    try:
        wait_for(lambda: sum("beat: Acquired lock" in b.output() for b in beats) == 1, 60, what="one beat locked")
        leader = next(b for b in beats if "beat: Acquired lock" in b.output())
        standby = next(b for b in beats if b is not leader)
        assert all(b.alive() for b in beats)

        # the drain, once, at the local minute
        wait_for(lambda: "drain_done" in leader.output() + standby.output(),
                 (at - datetime.now(UTC)).total_seconds() + 60, what=f"the drain at {at.isoformat()}")
        wait_for(lambda: "sweep_done" in leader.output() + standby.output() and
                 re.search(r"sweep_done .*triggered=1", leader.output() + standby.output()), 30,
                 what="a sweep that triggered the lost combine")
        logs = leader.output() + standby.output()
        sent = logged_at(logs, "Sending due task drain (tasks.drain)")
        assert len(sent) == 1 and "Sending due task" not in standby.output()
        assert at.astimezone(UTC) <= sent[0] < at.astimezone(UTC) + timedelta(seconds=10), (sent, at)
        assert logs.count("drain_done") == 1
        assert re.search(rf"drain_done bucket={bucket} sessions=1 chunks=1 ", logs)
        group_now = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
        assert group_now["DesiredCapacity"] == 1  # one chunk, 100 chunks per worker

        # what beat sent: x's chunk once (one drain), y's combine (the sweeper; at most once a minute)
        queued = queued_tasks(s)
        assert queued[("tasks.transcribe_chunk", f"sessions/{x}/chunks/0.wav")] == 1
        assert 1 <= queued[("tasks.combine_session", y)] <= 2
        assert set(queued) == {("tasks.transcribe_chunk", f"sessions/{x}/chunks/0.wav"),
                               ("tasks.combine_session", y)}

        # `stt-router drain` (no --now) is run by a beat's worker
        run = subprocess.run([str(VENV_BIN / "stt-router"), "drain"], env={**os.environ, **env},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        task_id = run.stdout.split()[2]
        wait_for(lambda: f"tasks.drain[{task_id}] succeeded" in leader.output() + standby.output(), 60,
                 what="the queued drain run by beat's worker")

        # the lock holder dies: the standby takes the lock and beat goes on (without draining again)
        leader.kill()
        wait_for(lambda: "beat: Acquired lock" in standby.output(), 60, what="the standby taking over")
        taken = logged_at(standby.output(), "beat: Acquired lock")[0]
        wait_for(lambda: [t for t in logged_at(standby.output(), "Sending due task sweep") if t >= taken], 30,
                 what="the standby's first sweep")
        assert "Sending due task drain" not in standby.output()
        assert standby.stop() == 0  # a clean stop (SIGTERM), the lock released
    finally:
        for b in beats:
            b.stop()


def test_a_dead_beat_stops_the_process_for_its_supervisor(moto) -> None:
    """The beat child dies (killed, or it lost its lock): `stt-router beat` exits 1 instead of living on
    as a worker without a beat, so that systemd or the container runtime restarts it."""
    env = worker_env(moto, "sqs", S3_BUCKET=unique("beat-dies"), CONTROL_QUEUE=unique("control"),
                     BEAT_KEY_PREFIX=unique("stt:beat") + ":", BEAT_MAX_INTERVAL_S="1")
    beat = ManagedProcess("beat-dies", [str(VENV_BIN / "stt-router"), "beat"], env=env)
    try:
        pid = int(wait_for(lambda: re.search(r"beat_process pid=(\d+)", beat.output()), 60,
                           what=f"the beat child's pid ({beat.log_path})")[1])
        wait_for(lambda: "beat: Acquired lock" in beat.output(), 30, what="beat's lock")
        os.kill(pid, 9)
        beat.proc.wait(60)
        assert beat.proc.returncode == 1, beat.output()[-3000:]
        assert "beat_died" in beat.output()
    finally:
        beat.stop()
