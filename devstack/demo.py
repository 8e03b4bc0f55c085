"""The demo: a recorded session goes through the running stack the way a recorder's uploads would.

The manifest first (title, language, prompt), then the chunks one by one, each a PUT to S3 that
S3 -> EventBridge -> router-local turns into a routing decision. Half-way the API server is
stopped, as when the GPU server goes away: the router then queues the chunks and the worker drains
them. Finally the manifest gets `total_chunks`, which completes the session, and the combined
transcript is printed. Each step is shown as it happens, read from the router's decision log
lines, S3, and Flower's API; a step that takes long prints what it is waiting for.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.procs import StackError
from devstack.stack import Stack, http_get
from router_lambda.emf import decision_lines
from transcription import layout, sessions
from transcription.settings import get_settings
from transcription.storage import exists, get_json, s3_client
from transcription.transcript import ChunkTranscript

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "demo-session"
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "m4a": "audio/mp4",
                 "ogg": "audio/ogg", "webm": "audio/webm"}
DECISION_TIMEOUT_S = 120.0
TRANSCRIPT_TIMEOUT_S = 300.0


@dataclass
class ChunkOutcome:
    index: int
    name: str
    route: str = "?"
    reason: str = ""
    task_id: str | None = None
    duration: float = 0.0
    text: str = ""
    transcribed: bool = False
    wall_s: float = 0.0


@dataclass
class DemoResult:
    session_id: str
    chunks: list[ChunkOutcome] = field(default_factory=list)
    combined: bool = False
    partial: bool = True
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.combined and not self.partial and all(c.transcribed for c in self.chunks)


def fmt_time(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m):02d}:{s:04.1f}"


def short(text: str, n: int = 96) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


class Demo:
    def __init__(self, stack: Stack, session_id: str, samples: Path = SAMPLES,
                 say: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.session_id = session_id
        self.samples = samples
        self.say = say
        self.settings = get_settings()
        self.bucket = stack.o.bucket
        self._seen_lines = 0

    # --- what the stack tells -----------------------------------------------------------------

    def s3(self) -> Any:
        return s3_client(self.settings)

    def exists(self, key: str) -> bool:
        return exists(self.bucket, key, settings=self.settings)

    def decisions(self) -> list[dict[str, Any]]:
        """The router's decision lines so far (router-local prints one JSON line per decision)."""
        router = self.stack.procs.get("router")
        if router is None:
            raise StackError("the router loop is not running")

        return list(decision_lines(router.output()))

    def wait(self, what: str, check: Callable[[], Any], timeout: float, every_s: float = 5.0) -> Any:
        """Poll `check` until truthy, saying what is awaited every few seconds; fail after `timeout`."""
        started = last = time.monotonic()
        while True:
            value = check()
            if value:
                return value
            self.stack.check_alive()
            now = time.monotonic()
            if now - started > timeout:
                raise StackError(f"timed out after {timeout:.0f} s waiting for {what} (logs: {self.stack.o.log_dir})")
            if now - last >= every_s:
                last = now
                self.say(f"      ... waiting for {what} [{now - started:.0f} s]")
            time.sleep(0.2)

    def decision_for(self, key: str, after: int, want: Callable[[dict[str, Any]], bool] = lambda d: True
                     ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for d in self.decisions()[after:]:
                if d.get("key") == key and want(d):
                    return d
            return None

        return self.wait(f"the router's decision on {key.rsplit('/', 1)[-1]} (S3 -> EventBridge -> router)",
                         found, DECISION_TIMEOUT_S)

    def flower_task(self, task_id: str) -> dict[str, Any] | None:
        """The task as Flower saw it over Redis (None if Flower is not running or has not seen it)."""
        if "flower" not in self.stack.procs:
            return None
        auth = base64.b64encode(self.stack.env["FLOWER_BASIC_AUTH"].encode()).decode()
        try:
            status, body = http_get(f"{self.stack.urls['flower']}/api/task/info/{task_id}",
                                    headers={"Authorization": f"Basic {auth}"})
        except OSError:
            return None
        return json.loads(body) if status == 200 else None

    # --- the recorder ---------------------------------------------------------------------------

    def upload(self, key: str, body: bytes, content_type: str) -> None:
        self.s3().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def upload_manifest(self, manifest: dict[str, Any], label: str) -> dict[str, Any]:
        key = layout.manifest_key(self.session_id)
        before = len(self.decisions())
        self.upload(key, json.dumps(manifest).encode(), "application/json")
        d = self.decision_for(key, before)
        self.say(f"  manifest.json  {label:<38} -> router: {d['decision']} ({d.get('reason', '')})")
        return d

    def chunk_files(self) -> list[Path]:
        files = sorted(p for p in (self.samples / "chunks").iterdir()
                       if p.suffix.lstrip(".").lower() in CONTENT_TYPES)
        if not files:
            raise StackError(f"no audio chunks in {self.samples / 'chunks'}")
        return files

    def send_chunk(self, index: int, path: Path) -> ChunkOutcome:
        ext = path.suffix.lstrip(".").lower()
        key = f"sessions/{self.session_id}/chunks/{index}.{ext}"
        out = ChunkOutcome(index, path.name)
        before = len(self.decisions())
        started = time.monotonic()
        self.upload(key, path.read_bytes(), CONTENT_TYPES[ext])
        d = self.decision_for(key, before)
        out.route, out.reason, out.task_id = d["decision"], d.get("reason", ""), d.get("task_id")
        secs = d.get("ms", 0) / 1000
        why = {"direct": f"server ready; it transcribed the chunk in the router's call, {secs:.1f} s",
               "queued": f"{short(out.reason, 60)}; task {str(out.task_id)[:8]} on SQS"}
        self.say(f"  chunk {index}  {path.name:<9} -> router: {out.route.upper():<7} "
                 f"({why.get(out.route, out.reason)})")
        if out.route not in ("direct", "queued", "skipped"):
            self.say(f"      !! {out.reason}")
            return out
        chunk = layout.parse_chunk_key(key)
        tkey, failed_key = chunk.transcript_key, chunk.failed_key
        done = self.wait(f"chunk {index}'s transcript (the worker drains the queue)",
                         lambda: "ok" if self.exists(tkey) else ("failed" if self.exists(failed_key) else None),
                         TRANSCRIPT_TIMEOUT_S)
        out.wall_s = time.monotonic() - started
        if done == "failed":
            reason = get_json(self.bucket, failed_key, settings=self.settings).get("reason", "")
            self.say(f"      !! failed: {reason}")
            return out

        t = ChunkTranscript.model_validate(get_json(self.bucket, tkey, settings=self.settings))
        out.transcribed, out.duration, out.text = True, t.duration, t.text
        by = "by the server" if out.route == "direct" else "by the worker"
        if out.route == "queued" and out.task_id:
            info = self.wait_flower(out.task_id)
            if info:
                by = f"by worker {info.get('worker')} (Flower: {info.get('state')}, {info.get('runtime', 0):.1f} s)"
        engine = f", engine {t.processing_s:.1f} s" if t.processing_s else ""
        self.say(f"      transcribed {by}: {t.duration:.1f} s of audio, {out.wall_s:.1f} s after upload{engine}")
        self.say(f"      \"{short(t.text)}\"")
        return out

    def wait_flower(self, task_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.flower_task(task_id)
            if info and info.get("state") in ("SUCCESS", "FAILURE"):
                return info
            time.sleep(0.3)
        return None

    def stop_server(self) -> None:
        self.say("  -- stopping the API server (the GPU server goes away); later chunks must queue --")
        self.stack.stop_part("api")
        try:
            http_get(f"{self.stack.urls['api']}/health", timeout=1)
            self.say("      !! the server still answers")
        except OSError:
            self.say(f"      {self.stack.urls['api']}/health no longer answers")

    # --- the whole demo -----------------------------------------------------------------------

    def run(self) -> DemoResult:
        result = DemoResult(self.session_id)
        manifest = json.loads((self.samples / "manifest.json").read_text())
        total = manifest.pop("total_chunks", None)
        files = self.chunk_files()
        self.say(f"\nRecording session {self.session_id}: {len(files)} chunks to s3://{self.bucket}/sessions/"
                 f"{self.session_id}/ (\"{manifest.get('title', '')}\")")
        self.upload_manifest(manifest, "(title, language, prompt)")
        half = len(files) // 2
        for i, path in enumerate(files):
            if i == half and "api" in self.stack.procs:
                self.stop_server()
            result.chunks.append(self.send_chunk(i, path))
        final = {**manifest, "total_chunks": total or len(files)}
        self.upload_manifest(final, f"(total_chunks: {final['total_chunks']}: session ended)")
        session_key = layout.session_transcript_key(self.session_id, "json")
        self.wait("the combined session transcript", lambda: self.exists(session_key), TRANSCRIPT_TIMEOUT_S)
        t = sessions.stored_session_transcript(self.bucket, self.session_id, settings=self.settings)
        if t is None:
            raise StackError(f"{session_key} is not a session transcript")
        result.combined, result.partial, result.text = True, t.partial, t.text
        self.say(f"\nSession transcript \"{t.title or self.session_id}\" ({len(t.chunks)} chunks, "
                 f"{t.duration:.1f} s, language {t.language}{', PARTIAL' if t.partial else ''}):")
        for seg in t.segments:
            self.say(f"  [{fmt_time(seg.start)} - {fmt_time(seg.end)}] {seg.text.strip()}")
        formats = ", ".join(layout.session_transcript_key(self.session_id, f).rsplit("/", 1)[-1]
                            for f in layout.SESSION_FORMATS)
        self.say(f"  stored as s3://{self.bucket}/transcripts/{self.session_id}/{{{formats}}}")
        return result


def summary(result: DemoResult) -> str:
    n = len(result.chunks)
    done = sum(c.transcribed for c in result.chunks)
    routes: dict[str, int] = {}
    for c in result.chunks:
        routes[c.route] = routes.get(c.route, 0) + 1
    how = ", ".join(f"{v} {k}" for k, v in sorted(routes.items()))
    combined = "the session combined" if result.combined and not result.partial else (
        "the session combined with gaps (partial)" if result.combined else "the session NOT combined")
    return f"demo: {done} of {n} chunks transcribed ({how}); {combined}"
