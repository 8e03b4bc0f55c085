"""What the server adds over the engine, and how fast /health answers while the engine is busy.

    python -m bench.server [--repeat N]

One run, the same files: each speech file is transcribed by the engine in this process (raw) and
through the real server (`stt-router serve`, multipart upload over HTTP), alternately. A request's
added time is its wall time minus the engine time the server measured for it (`processing_s`), so
decode, upload, JSON and the HTTP stack are what is left. Then one long transcription keeps the
engine busy while `/health` is polled.

Writes bench/results/server.json: added_ms_p50, added_ms_p95, health_ms_p99_busy, and the context.
"""

from __future__ import annotations

import argparse
import os
import secrets
import threading
import time

from bench.common import percentile, print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the files")
    args = parser.parse_args()

    import httpx

    from tests.support.services import VENV_BIN, ManagedProcess, free_port, wait_for
    from tests.support.speech import SENTENCES, speak
    from transcription.audio import decode_audio
    from transcription.engines import load_engine
    from transcription.options import TranscribeOptions
    from transcription.settings import get_settings

    files = [speak(s) for s in SENTENCES]
    long_file = speak(" ".join(SENTENCES * 2))  # ~50 s of speech: a long busy period
    options = TranscribeOptions(language="en")
    settings = get_settings()
    engine = load_engine(settings)
    key = secrets.token_hex(16)
    port = free_port()
    server = ManagedProcess("bench-server", [str(VENV_BIN / "stt-router"), "serve", "--port", str(port)],
                            env={"API_KEY": key, "SERVER_CAPACITY": "1", "SLOT_WAIT_S": "0.5",
                                 "CPU_THREADS": str(settings.cpu_threads)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 180, what="server ready")
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        audios = [decode_audio(f) for f in files]
        engine.transcribe(audios[0].samples, options)  # warm-up, both sides
        client.post("/transcribe", files={"file": ("w.wav", files[0].read_bytes())}, data={"language": "en"})

        raw_ms: list[float] = []
        server_engine_ms: list[float] = []
        wall_ms: list[float] = []
        added_ms: list[float] = []
        for _ in range(args.repeat):
            for path, audio in zip(files, audios, strict=True):
                t0 = time.perf_counter()
                engine.transcribe(audio.samples, options)
                raw_ms.append((time.perf_counter() - t0) * 1000)
                body = path.read_bytes()
                t0 = time.perf_counter()
                r = client.post("/transcribe", files={"file": (path.name, body, "audio/wav")}, data={"language": "en"})
                wall = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                engine_ms = r.json()["processing_s"] * 1000
                wall_ms.append(wall)
                server_engine_ms.append(engine_ms)
                added_ms.append(wall - engine_ms)

        idle_health = _poll_health(client, 200)
        done = threading.Event()

        def long_job() -> None:
            try:
                client.post("/transcribe", files={"file": ("long.wav", long_file.read_bytes())},
                            data={"language": "en"})
            finally:
                done.set()

        job = threading.Thread(target=long_job)
        job.start()
        wait_for(lambda: httpx.get(f"{url}/health").json()["status"] == "busy", 60, interval=0.01, what="busy")
        busy_health: list[float] = []
        with httpx.Client(base_url=url, timeout=10) as probe:
            while not done.is_set():
                t0 = time.perf_counter()
                status = probe.get("/health").json()["status"]
                if status == "busy":
                    busy_health.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.01)
        job.join()
    finally:
        server.stop()

    result = {
        "added_ms_p50": round(percentile(added_ms, 50), 1),
        "added_ms_p95": round(percentile(added_ms, 95), 1),
        "health_ms_p99_busy": round(percentile(busy_health, 99), 2),
        "health_ms_p50_busy": round(percentile(busy_health, 50), 2),
        "health_ms_p99_idle": round(percentile(idle_health, 99), 2),
        "raw_engine_ms_p50": round(percentile(raw_ms, 50), 1),
        "server_engine_ms_p50": round(percentile(server_engine_ms, 50), 1),
        "server_wall_ms_p50": round(percentile(wall_ms, 50), 1),
        "requests": len(added_ms),
        "health_probes_busy": len(busy_health),
        "audio_s_per_file": round(sum(a.duration for a in audios) / len(audios), 2),
        "engine": f"{engine.name} {engine.model_name} {engine.device} {engine.compute_type}",
        "cpu_threads": settings.cpu_threads or os.cpu_count(),
    }
    rows = [("raw engine call (in process)", raw_ms), ("engine inside the server", server_engine_ms),
            ("server request, wall", wall_ms), ("added by the server", added_ms), ("/health, idle", idle_health),
            ("/health, engine busy", busy_health)]
    print_table("server overhead over the engine (ms; same files, one run)", ["measure", "p50", "p95", "p99"],
                [[name, percentile(v, 50), percentile(v, 95), percentile(v, 99)] for name, v in rows])
    write_result("server", result)


def _poll_health(client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get("/health")
        out.append((time.perf_counter() - t0) * 1000)
    return out


if __name__ == "__main__":
    main()
