"""A fault-injecting HTTP proxy to put in front of a real server (the router's retries, the chaos suite).

    proxy = FaultProxy("http://127.0.0.1:8000")        # listens on 127.0.0.1:<free port>
    proxy.fail("/transcribe-s3", [503, 503])            # the next two POSTs there get 503, then it forwards
    proxy.inject(path="/health", status=503, times=-1)  # every /health gets 503 until proxy.clear()
    proxy.inject(path="/transcribe-s3", action="drop")  # close the connection without an answer
    proxy.inject(path="/transcribe-s3", action="reset") # TCP reset
    proxy.inject(path="/transcribe-s3", action="forward", delay_s=3)  # slow, then the real answer
    ... proxy.seen("POST", "/transcribe-s3")            # [Seen(at, method, path, status, injected)]
    proxy.close()

Faults match on method and path (without the query string), are used in the order they were added,
and each applies `times` times (-1: until cleared). Everything else is forwarded to the upstream as it
is, and the upstream's answer is returned as it is (502 when the upstream cannot be reached).
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

Action = Literal["status", "drop", "reset", "forward"]
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}


@dataclass
class Fault:
    method: str | None = None  # None: any method
    path: str | None = None  # None: any path
    action: Action = "status"
    status: int = 503
    body: bytes = b'{"detail": "injected fault", "kind": "injected"}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay_s: float = 0.0  # before the action (with "forward": a slow upstream)
    times: int = 1  # -1: until cleared

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or self.path == path)


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the request arrived
    method: str
    path: str
    status: int | None  # None: dropped or reset
    injected: bool


class FaultProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, upstream_timeout_s: float = 600) -> None:
        self.upstream = upstream.rstrip("/")
        self.upstream_timeout_s = upstream_timeout_s
        self._faults: list[Fault] = []
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- faults -------------------------------------------------------------------------------
    def inject(self, method: str | None = None, path: str | None = None, *, action: Action = "status",
               status: int = 503, times: int = 1, delay_s: float = 0.0, body: bytes | dict | None = None,
               headers: dict[str, str] | None = None) -> Fault:
        fault = Fault(method=method, path=path, action=action, status=status, delay_s=delay_s, times=times)
        if body is not None:
            fault.body = json.dumps(body).encode() if isinstance(body, dict) else body
        if headers:
            fault.headers = {**fault.headers, **headers}
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(self, path: str, statuses: list[int], method: str | None = "POST") -> None:
        """The next len(statuses) matching requests get these statuses, in order; later ones are forwarded."""
        for status in statuses:
            self.inject(method, path, status=status)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    # --- what it saw --------------------------------------------------------------------------
    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen
                    if (method is None or s.method == method) and (path is None or s.path == path)]

    def reset_log(self) -> None:
        with self._lock:
            self._seen.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- serving ------------------------------------------------------------------------------
    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times > 0:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _record(self, at: float, method: str, path: str, status: int | None, injected: bool) -> None:
        with self._lock:
            self._seen.append(Seen(at, method, path, status, injected))

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        at = time.monotonic()
        method, path = h.command, urlsplit(h.path).path
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._take(method, path)
        if fault and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault and fault.action == "drop":
            self._record(at, method, path, None, True)
            h.close_connection = True
            return
        if fault and fault.action == "reset":
            self._record(at, method, path, None, True)
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            return
        if fault and fault.action == "status":
            self._record(at, method, path, fault.status, True)
            self._respond(h, fault.status, list(fault.headers.items()), fault.body)
            return
        status, headers, data = self._forward(method, h.path, h.headers.items(), body)
        self._record(at, method, path, status, False)
        self._respond(h, status, headers, data)

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        u = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=self.upstream_timeout_s)
        try:
            fwd = {k: v for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
            fwd["Host"] = u.netloc
            fwd["Content-Length"] = str(len(body))
            conn.request(method, target, body=body if body or method in ("POST", "PUT", "PATCH") else None,
                         headers=fwd)
            r = conn.getresponse()
            return r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in HOP_BY_HOP], r.read()
        except OSError as e:
            return 502, [("Content-Type", "application/json")], json.dumps(
                {"detail": f"fault proxy: upstream unreachable: {e}", "kind": "proxy"}).encode()
        finally:
            conn.close()

    @staticmethod
    def _respond(h: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        h.send_response(status)
        for k, v in headers:
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("date", "server"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
