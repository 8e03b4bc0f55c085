"""Idle shutdown and the stop action. EC2 cannot exist here: the instance is one in moto's EC2, and
the instance metadata service (which tells a machine its own instance id) is a small fake HTTP
server speaking IMDSv2 at `AWS_EC2_METADATA_SERVICE_ENDPOINT`. Everything else is real: the
worker process, SQS and S3 on moto, Redis, the model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpu_worker.idle import IdleMonitor
from gpu_worker.stop import instance_id, run_stop_action
from tasks.broker import ensure_queues, sqs_client
from tasks.enqueue import enqueue_chunk
from tests.support.services import unique, wait_for
from tests.support.worker import producer, settings_for, start_worker, worker_env
from transcription.errors import NetworkError

TOKEN = "fake-imds-token"


class FakeIMDS(ThreadingHTTPServer):
    def __init__(self, iid: str) -> None:
        self.iid = iid

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: str) -> None:
                self.send_response(code)
                self.end_headers()
                self.wfile.write(body.encode())

            def do_PUT(self) -> None:
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._send(200 if ok else 400, TOKEN if ok else "")

            def do_GET(self) -> None:  # IMDSv2: the token is required
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    return self._send(401, "")
                if self.path == "/latest/meta-data/instance-id":
                    return self._send(200, iid)
                return self._send(404, "")

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def instance(moto, monkeypatch) -> Iterator[tuple[str, FakeIMDS]]:
    ec2 = moto.client("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    reservation = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge")
    iid = reservation["Instances"][0]["InstanceId"]
    imds = FakeIMDS(iid)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
    yield iid, imds
    imds.shutdown()


def state(moto, iid: str) -> str:
    return moto.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_stop_actions_against_moto_ec2(moto, instance, monkeypatch) -> None:
    iid, _ = instance
    s = settings_for(worker_env(moto))
    assert instance_id() == iid
    assert run_stop_action("none", s) is None and state(moto, iid) == "running"
    assert run_stop_action("terminate", s) == iid
    assert state(moto, iid) in ("shutting-down", "terminated")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(NetworkError, match="instance metadata"):
        run_stop_action("stop", s)


def test_idle_monitor_waits_for_an_empty_queue(moto) -> None:
    s = settings_for(worker_env(moto, WORKER_IDLE_TIMEOUT_S="1"))
    url = ensure_queues(s)[s.transcribe_queue]
    sqs_client(s).send_message(QueueUrl=url, MessageBody="waiting")
    fired = threading.Event()
    monitor = IdleMonitor(s, [s.transcribe_queue], on_idle=fired.set, busy=lambda: False)
    monitor.start()
    try:
        assert not fired.wait(3)  # idle for longer than the timeout, but a message is waiting
        sqs_client(s).purge_queue(QueueUrl=url)
        assert fired.wait(10)
    finally:
        monitor.stop()
    busy = IdleMonitor(s, [s.transcribe_queue], on_idle=fired.clear, busy=lambda: True)
    busy.start()
    time.sleep(2.5)
    busy.stop()
    assert fired.is_set()  # a busy worker is never idle


def test_worker_finishes_its_work_then_stops_itself_and_its_instance(moto, instance, speech_files) -> None:
    iid, imds = instance
    bucket = unique("idle")
    moto.client("s3").create_bucket(Bucket=bucket)
    env = worker_env(moto, WORKER_IDLE_TIMEOUT_S="4", WORKER_STOP_ACTION="stop",
                     AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
    s = settings_for(env)
    ensure_queues(s)
    key = "sessions/idle/chunks/0.wav"
    moto.client("s3").put_object(Bucket=bucket, Key=key, Body=speech_files[0].read_bytes())
    enqueue_chunk(bucket, key, app=producer(env), settings=s)  # work waiting before it starts
    started = time.monotonic()
    worker = start_worker(env, "worker-idle", wait=False)
    try:
        wait_for(lambda: not worker.alive(), 120, what=f"the idle worker to exit ({worker.log_path})")
        out = worker.output()
        assert worker.proc.returncode == 0, out[-3000:]
        assert worker.engine_runs(key) == 1 and "idle_shutdown" in out
        assert out.index("chunk_done") < out.index("idle_shutdown")
        assert time.monotonic() - started >= 4
        assert state(moto, iid) in ("stopping", "stopped")
        assert f"idle_stop_action action=stop instance={iid}" in out
    finally:
        worker.stop()
