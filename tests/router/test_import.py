"""Cold start: the handler's import graph holds none of the heavy parts (checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "whisperx", "fastapi", "starlette", "numpy", "av", "ctranslate2", "faster_whisper", "pycurl",
         "transcription.engines", "transcription.audio", "transcription.chunk", "app", "gpu_worker")

PROBE = """
import importlib, json, sys
module, attr = sys.argv[1].rsplit(".", 1)
fn = getattr(importlib.import_module(module), attr)
print(json.dumps({"callable": callable(fn), "modules": sorted(sys.modules)}))
"""


def test_the_templates_handler_imports_without_heavy_modules() -> None:
    from cfnlint.decode import decode

    tpl, _ = decode(str(ROOT / "deploy" / "template.yaml"))
    handler = tpl["Resources"]["RouterFunction"]["Properties"]["Handler"]
    proc = subprocess.run([sys.executable, "-c", PROBE, handler], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["callable"]
    loaded = [m for m in out["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == [], f"the router's import graph pulls in {loaded}"
    assert "celery" in out["modules"] and "tenacity" in out["modules"]  # the probe did see the real graph
