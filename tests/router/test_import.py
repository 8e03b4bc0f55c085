"""Cold start: the handler's import graph holds none of the heavy parts, and no Celery until the
router has to queue (checked in a fresh process). S3 goes through botocore: boto3 would add s3transfer
and its resource layer to every cold start (issue 17), and it loads only with Celery's SQS transport."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Celery and kombu load when the router first queues (router_lambda/publish.py), not on the direct path
QUEUE_ONLY = ("celery", "kombu", "billiard", "vine", "amqp")
# combining, the transcript models, the formats and the manifest load for a failed chunk or a manifest
# event (router_lambda/route.py), not to decide the direct path (issue 17)
FAILURE_ONLY = ("transcription.sessions", "transcription.combine", "transcription.transcript",
                "transcription.formats", "transcription.manifest", "transcription.options")
# boto3 adds s3transfer (and multiprocessing) and its resource layer to an import; the router builds botocore
# clients (transcription.storage.aws_client) and meets boto3 only through kombu's SQS transport, to queue
BOTO3 = ("boto3", "s3transfer")
HEAVY = ("torch", "whisperx", "fastapi", "starlette", "numpy", "av", "ctranslate2", "faster_whisper", "pycurl",
         "transcription.engines", "transcription.audio", "transcription.chunk", "app", "gpu_worker")

PROBE = """
import contextlib, importlib, io, json, os, sys
module, attr = sys.argv[1].rsplit(".", 1)
fn = getattr(importlib.import_module(module), attr)
cold = sorted(sys.modules)
# decisions that queue nothing: a key outside sessions/, a poison event
with contextlib.redirect_stdout(io.StringIO()):  # each decision's EMF log line
  out = fn({"detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "transcripts/x/chunks/0.json", "size": 3}}})
  out2 = fn({"no": "records"})
decided = sorted(sys.modules)
from pydantic.plugin import _loader
looked_up = _loader._plugins is not None  # pydantic's plugin lookup ran (None until it does)
from router_lambda import publish
from transcription.settings import get_settings
publish.producer(get_settings())  # the first queued decision builds the producer
print(json.dumps({"callable": callable(fn), "modules": cold, "plugins_looked_up": looked_up,
                  "plugins_env": os.environ.get("PYDANTIC_DISABLE_PLUGINS"), "decided": decided,
                  "queued": sorted(sys.modules),
                  "decisions": [d["decision"] for d in out["decisions"] + out2["decisions"]]}))
"""


def test_the_templates_handler_imports_without_heavy_modules_and_celery_only_to_queue() -> None:
    from cfnlint.decode import decode

    tpl, _ = decode(str(ROOT / "deploy" / "template.yaml"))
    handler = tpl["Resources"]["RouterFunction"]["Properties"]["Handler"]
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}  # the handler sets it
    proc = subprocess.run([sys.executable, "-c", PROBE, handler], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["callable"]
    assert _among(out["modules"], HEAVY) == [], f"the router's import graph pulls in {_among(out['modules'], HEAVY)}"
    assert "tenacity" in out["modules"] and "urllib3" in out["modules"] and "botocore.session" in out["modules"]
    assert out["decisions"] == ["skipped", "skipped"]  # outside sessions/, and a poison event
    for when in ("modules", "decided"):
        assert _among(out[when], QUEUE_ONLY) == [], f"Celery before the router queues ({when}): " \
            f"{_among(out[when], QUEUE_ONLY)[:10]}"
        assert _among(out[when], FAILURE_ONLY) == [], f"a failure path's modules before one is taken ({when}): " \
            f"{_among(out[when], FAILURE_ONLY)}"
        assert _among(out[when], BOTO3) == [], f"boto3 on the direct path ({when}): {_among(out[when], BOTO3)[:5]}"
    # pydantic's plugin lookup (every distribution's entry points) did not run for the import or the
    # decisions, and the handler left the environment as it found it
    assert out["plugins_looked_up"] is False and out["plugins_env"] is None
    assert "celery" in out["queued"] and "kombu" in out["queued"]  # the probe does see the queueing graph
    assert _among(out["queued"], HEAVY) == []


def _among(modules: list[str], roots: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in roots)]
