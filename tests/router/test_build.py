"""`stt-router build-lambda`: the zip holds the router's dependencies only, and its handler imports and
routes in a clean virtual environment (no project, no .venv packages), as on Lambda's runtime.

The zip carries bytecode: Lambda's /var/task is read-only, so without it every cold start compiles
every module it imports (about three times the import's CPU, issue 17). The clean interpreter runs
with `-B` (it writes no bytecode, as on Lambda) and reports every module it loaded from the package
without a .pyc next to it.

The clean interpreter routes two real S3 events against moto: a chunk (no server -> queued on SQS
through kombu, without pycurl) and a manifest (the session-completion check, without Redis' client).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from router_lambda import local
from tests.support.services import ROOT, VENV_BIN, free_port, unique, wait_for
from transcription.settings import Settings

pytestmark = pytest.mark.timeout(600)

HEAVY = ("torch", "whisperx", "fastapi", "starlette", "numpy", "av", "ctranslate2", "faster_whisper", "pycurl",
         "redis", "app", "gpu_worker")

RUN = """
import importlib.util, json, os, sys
sys.path.insert(0, sys.argv[1])  # Lambda puts the unzipped package first on the path (/var/task)
from router_lambda.handler import handler
events = json.load(open(sys.argv[2]))
results = [handler(e) for e in events]
task = os.path.realpath(sys.argv[1])
loaded = [m.__file__ for m in list(sys.modules.values())
          if (getattr(m, "__file__", None) or "").endswith(".py") and os.path.realpath(m.__file__).startswith(task)]
missing = sorted(f for f in loaded if not os.path.exists(importlib.util.cache_from_source(f)))
print(json.dumps({"results": results, "modules": sorted(sys.modules), "prefix": sys.prefix, "from_task": len(loaded),
                  "without_bytecode": missing}))
"""


def test_the_zip_imports_and_routes_in_a_clean_venv(moto, tmp_path: Path) -> None:
    zip_path = tmp_path / "router-lambda.zip"
    proc = subprocess.run([str(VENV_BIN / "stt-router"), "build-lambda", "--output", str(zip_path)],
                          capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "packages: " in proc.stdout and "celery==" in proc.stdout and "tenacity==" in proc.stdout
    assert f"bytecode: Python {sys.version_info.major}.{sys.version_info.minor}" in proc.stdout  # as the runtime

    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "task")
    tops = {n.split("/")[0].split("-")[0].lower() for n in names}
    assert "router_lambda" in tops and "tasks" in tops and "transcription" in tops
    assert not tops & set(HEAVY), tops & set(HEAVY)
    _assert_unchecked_bytecode(tmp_path / "task", names)
    assert zip_path.stat().st_size < 50e6  # Lambda's limit for a directly uploaded zip

    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)

    # two real events from moto's S3
    bucket = unique("zip")
    s3, sqs = moto.client("s3"), moto.client("sqs")
    s3.create_bucket(Bucket=bucket)
    settings = Settings(s3_bucket=bucket)
    url = local.setup(bucket, settings, queue=unique("zip-events"), rule=unique("zip-rule"))
    session = unique("zip")
    chunk = f"sessions/{session}/chunks/0.wav"
    s3.put_object(Bucket=bucket, Key=chunk, Body=b"RIFF-not-really-audio")
    s3.put_object(Bucket=bucket, Key=f"sessions/{session}/manifest.json", Body=b'{"total_chunks": 2}')
    events: list[dict] = []

    def collect() -> bool:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            events.append(json.loads(m["Body"]))
        return len(events) >= 2

    wait_for(collect, 30, interval=0, what="two S3 events")
    (tmp_path / "events.json").write_text(json.dumps(sorted(events, key=lambda e: e["detail"]["object"]["key"])))

    queue = unique("zip-transcribe")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **moto.env(), "S3_BUCKET": bucket,
           "CELERY_BROKER_URL": "sqs://", "TRANSCRIBE_QUEUE": queue, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "FAST_API_SERVER_URL": f"http://127.0.0.1:{free_port()}"}
    run = subprocess.run([str(venv / "bin" / "python"), "-B", "-c", RUN, str(tmp_path / "task"),
                          str(tmp_path / "events.json")], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(out["prefix"]).resolve() == venv.resolve()
    loaded = [m for m in out["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == []
    assert out["from_task"] > 300  # the handler, botocore, pydantic, kombu ... all from the package
    assert out["without_bytecode"] == []  # nothing compiled at import
    decisions = {r["decisions"][0]["key"]: r["decisions"][0] for r in out["results"]}
    assert decisions[chunk]["decision"] == "queued", decisions
    assert decisions[f"sessions/{session}/manifest.json"]["decision"] == "manifest", decisions

    queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    [m] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)["Messages"]
    envelope = json.loads(base64.b64decode(m["Body"]))
    assert envelope["headers"]["task"] == "tasks.transcribe_chunk"
    assert envelope["headers"]["id"] == decisions[chunk]["task_id"]
    assert envelope["content-type"] == "application/json"


def _assert_unchecked_bytecode(task: Path, names: list[str]) -> None:
    """The project's modules have unchecked hash-based .pyc files (PEP 552) made from the shipped source,
    so Python uses them as they are whatever the files' times after unzipping."""
    sources = [n for n in names if n.endswith(".py") and n.split("/")[0] in ("router_lambda", "transcription", "tasks")]
    assert len(sources) > 50
    pycs = [n for n in names if n.endswith(".pyc")]
    assert len(pycs) > 500  # the dependencies' modules too
    for name in sources:
        source = task / name
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.exists(), f"no bytecode for {name}"
        header = cached.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, name
        assert int.from_bytes(header[4:8], "little") == 0b01, f"{name}: not unchecked hash-based bytecode"
        assert header[8:16] == importlib.util.source_hash(source.read_bytes()), f"{name}: bytecode of other source"
