"""schemathesis over the whole OpenAPI schema against the real server: every default check
(no 5xx, documented status codes, content types, headers and response schemas, invalid data
rejected, missing or ignored auth refused, undeclared methods answered 405), 0 failures.

The tuning is in `schemathesis.toml` next to this file: a schema cannot say whether bytes are
audio, so schema-valid requests to the transcribe routes may rightly end in 404, 413, 415 or 422
(and /transcribe-s3 in 403 for a bucket or prefix outside the configured ones, OpenAI's route in
400 for a known speaker's reference that cannot be used); a schema-valid
session id may name no session (404) or break the key layout's '..' rule (422), and a session's
transcript does not exist before it is combined (409);
and a JSON body over the server's size limit is refused with 413 before it is parsed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.app.conftest import API_KEY
from tests.support.services import VENV_BIN

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_failures(server, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "schemathesis"), "--no-color", "--config-file", str(CONFIG), "run",
         f"{server.url}/openapi.json", "--header", f"Authorization: Bearer {API_KEY}", "--workers", "1",
         "--request-timeout", "60", "--max-examples", "100"],
        capture_output=True, text=True, timeout=900, env=os.environ, cwd=tmp_path,  # its cache stays out of the tree
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report[-8000:]
    assert "9 selected / 9 total" in report
