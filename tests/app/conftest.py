"""Fixtures of the server's tests: a real `stt-router serve` process, a local audio web site, a
canary listener that must never be connected to, and a recorder of this process's socket connects."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support.services import VENV_BIN, ManagedProcess, free_port, unique, wait_for

API_KEY = "test-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


# --- socket connects of this process, seen through Python's audit hooks (no mock involved) ----------
_recording: list[tuple] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" and _recording is not None:
        _recording.append(tuple(args[1]) if isinstance(args[1], tuple) else (args[1],))


sys.addaudithook(_audit)


@contextlib.contextmanager
def recorded_connects() -> Iterator[list[tuple]]:
    """Every `socket.connect` this process makes inside the block (address tuples)."""
    global _recording
    _recording = []
    try:
        yield _recording
    finally:
        _recording = None


# --- a TCP listener that counts connections: any count above 0 means a refused address was reached --
class Canary:
    def __init__(self, host: str = "127.0.0.2") -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host, self.port = self.sock.getsockname()[:2]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="session")
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.close()


# --- a local web site serving audio, redirects and misbehaving answers ------------------------------
@dataclass
class Site:
    host: str
    port: int
    files: dict[str, bytes]
    redirects: dict[str, str]
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            site.requests.append(self.path)
            if self.path in site.redirects:
                self.send_response(302)
                self.send_header("Location", site.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/slow.wav":
                time.sleep(6)
                self.send_response(200)
                self.end_headers()
            elif self.path == "/slow-headers.wav":  # a byte of the headers every 0.2 s, for up to 30 s
                head = b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nX-Pad: " + b"a" * 150
                with contextlib.suppress(OSError):
                    for byte in head:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.2)
                self.close_connection = True
            elif self.path == "/big-declared.wav":
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 40))
                self.end_headers()
            elif self.path == "/big-streamed.wav":  # no Content-Length: the body ends when the connection does
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(OSError):
                    for _ in range(64):
                        self.wfile.write(b"\0" * (256 << 10))
                self.close_connection = True
            elif self.path in site.files:
                body = site.files[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

    return Handler


@pytest.fixture(scope="session")
def site(speech_files: list[Path], canary: Canary) -> Iterator[Site]:
    s = Site("127.0.0.1", 0, {"/speech.wav": speech_files[0].read_bytes(), "/not-audio.wav": b"<html></html>"}, {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(s))
    s.port = httpd.server_address[1]
    s.redirects.update({
        "/to-speech": "/speech.wav",
        "/to-canary": f"http://{canary.host}:{canary.port}/x.wav",
        "/to-canary-decimal": f"http://{int.from_bytes(socket.inet_aton(canary.host), 'big')}:{canary.port}/x",
        "/to-metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "/to-metadata-v6": "http://[fd00:ec2::254]/latest/meta-data/",
        "/to-file": "file:///etc/passwd",
        "/to-gopher": f"gopher://{canary.host}:{canary.port}/_stats",
        "/loop": "/loop",
    })
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield s
    httpd.shutdown()
    httpd.server_close()


# --- the real server -----------------------------------------------------------------------------
@dataclass
class RunningServer:
    process: ManagedProcess
    url: str
    startup_statuses: list[str]

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=300, **kw)


SERVER_ENV = {
    "API_KEY": API_KEY,
    "SERVER_CAPACITY": "1",
    "SLOT_WAIT_S": "0.5",
    "MAX_UPLOAD_MB": "2",
    "MAX_JSON_KB": "16",
    "URL_FETCH_ALLOWLIST": json.dumps(["127.0.0.1/32"]),
    "URL_FETCH_TIMEOUT_S": "3",
    "CPU_THREADS": "2",
    "CELERY_BROKER_URL": "sqs://",  # moto's SQS (AWS_ENDPOINT_URL): where the combine trigger publishes
    "TRANSCRIBE_QUEUE": unique("server-transcribe"),
    "S3_BUCKET": unique("server-bucket"),  # the one bucket the server reads and writes
}


def start_server(name: str, env: dict[str, str], wait_ready: bool = True) -> RunningServer:
    port = free_port()
    proc = ManagedProcess(name, [str(VENV_BIN / "stt-router"), "serve", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    statuses: list[str] = []

    def status() -> str | None:
        if not proc.alive():
            raise RuntimeError(f"server exited:\n{proc.output()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            s = httpx.get(f"{url}/health", timeout=2).json()["status"]
            if not statuses or statuses[-1] != s:
                statuses.append(s)
            return s
        return None

    try:
        wait_for(lambda: status() == "ready" if wait_ready else status(), 120, interval=0.02,
                 what=f"{name} /health")
    except BaseException:
        proc.stop()
        raise
    return RunningServer(proc, url, statuses)


@pytest.fixture(scope="session")
def server(moto) -> Iterator[RunningServer]:
    """One `stt-router serve` for the server tests (moto's endpoint is in its environment), with
    its bucket created."""
    moto.client("s3").create_bucket(Bucket=SERVER_ENV["S3_BUCKET"])
    running = start_server("server", SERVER_ENV)
    yield running
    running.process.stop()
