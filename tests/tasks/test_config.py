"""The Celery app's configuration: the delivery guarantees and JSON-only rule are in force, and a
producer can import it without anything heavy."""

from __future__ import annotations

import subprocess
import sys

from gpu_worker.worker import check_settings
from tasks.celery_app import celery_config, chunk_task_id, make_app, soft_time_limit
from tasks.retry import backoff_s, lease_wait_s
from transcription.settings import Settings


def test_json_only_and_no_lost_chunks() -> None:
    conf = make_app(Settings(celery_broker_url="sqs://", transcribe_queue="tq")).conf
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.task_acks_on_failure_or_timeout is False
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_default_queue == "tq"
    assert conf.worker_enable_remote_control is False  # SQS has no broadcast
    assert conf.broker_transport_options["visibility_timeout"] == 3600
    assert conf.task_time_limit == 1800 and conf.task_soft_time_limit == soft_time_limit(Settings()) < 1800
    assert conf.worker_proc_alive_timeout >= 60


def test_predefined_queue_urls_in_production() -> None:
    s = Settings(celery_broker_url="sqs://", sqs_queue_url="https://sqs.eu-west-1.amazonaws.com/1/transcribe",
                 sqs_dlq_url="https://sqs.eu-west-1.amazonaws.com/1/transcribe-dlq", aws_region="eu-west-1")
    opts = celery_config(s)["broker_transport_options"]
    assert opts["predefined_queues"] == {
        "transcribe": {"url": s.sqs_queue_url}, "transcribe-dlq": {"url": s.sqs_dlq_url}}
    assert opts["region"] == "eu-west-1"
    assert "predefined_queues" not in celery_config(Settings(celery_broker_url="sqs://"))["broker_transport_options"]
    redis_opts = celery_config(Settings(celery_broker_url="redis://h:6379/1", visibility_timeout_s=25))
    assert redis_opts["broker_transport_options"]["unacked_restore_interval"] == 5


def test_settings_that_would_break_guarantees_are_named() -> None:
    assert check_settings(Settings()) == []
    problems = check_settings(Settings(task_time_limit_s=4000, lease_ttl_s=5000, sqs_queue_url="https://q/1"))
    assert len(problems) == 3
    assert any("VISIBILITY_TIMEOUT_S" in p and "TASK_TIME_LIMIT_S" in p for p in problems)
    assert any("SQS_DLQ_URL" in p for p in problems)


def test_backoff_grows_is_capped_and_stays_under_the_visibility_timeout() -> None:
    s = Settings(task_retry_backoff_s=2, task_retry_backoff_max_s=60, visibility_timeout_s=3600)
    waits = [max(backoff_s(n, s) for _ in range(50)) for n in range(1, 10)]
    assert waits[0] <= 2 and waits[2] <= 8 and max(waits) <= 60
    assert waits[5] > waits[0]
    assert backoff_s(30, Settings(visibility_timeout_s=20)) <= 10
    assert lease_wait_s(0, s) >= 1 and lease_wait_s(500, s) == 30


def test_task_ids_are_deterministic_per_upload() -> None:
    assert chunk_task_id("b", "sessions/s/chunks/1.wav", "e1") == chunk_task_id("b", "sessions/s/chunks/1.wav", "e1")
    assert chunk_task_id("b", "sessions/s/chunks/1.wav", "e1") != chunk_task_id("b", "sessions/s/chunks/1.wav", "e2")


def test_producer_import_is_light() -> None:
    """The router imports the app and the publishing helpers: no engine, numpy, torch or FastAPI."""
    code = ("import sys, tasks.celery_app, tasks.enqueue, tasks.broker, tasks.dlq; "
            "heavy = {'torch', 'numpy', 'faster_whisper', 'ctranslate2', 'whisperx', 'fastapi', 'tasks.transcribe'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
