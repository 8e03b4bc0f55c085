"""OpenAI's `chunking_strategy` on the real server (`stt-router serve` under uvicorn), called with the
official `openai` client and as curl sends it: "auto" is the usual decode, a server_vad object
decodes only where voice activity detection hears speech, with its numbers, and anything else is a
400 with the reason.

Audio: pyannote's two-person call with 12 s of faint noise (-50 dBFS) put in a pause between two
utterances (at 14.3 s), so the decode has a long stretch with no speech in it."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from tests.app.conftest import API_KEY, AUTH
from tests.support.real_speech import concat, load_sample, wav_bytes, wer


@pytest.fixture(scope="module")
def case():
    call = load_sample()
    rec = concat([call.cut(0, 14.3).pad(after_s=12, noise_db=-50), call.cut(14.3, call.duration)])
    return rec, wav_bytes(rec.samples)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=300)


def test_auto_and_server_vad_transcribe_the_call_with_the_openai_client(client, case) -> None:
    rec, audio = case
    for strategy in ("auto", {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                              "silence_duration_ms": 500}):
        t = client.audio.transcriptions.create(file=("call.wav", audio), model="whisper-1",
                                               response_format="verbose_json", chunking_strategy=strategy)
        assert wer(rec.reference_text, t.text) < 0.4, (strategy, t.text)
        assert "chicago" in t.text.lower() and t.segments, strategy
        assert all(0 <= s.start <= s.end <= rec.duration + 0.5 for s in t.segments), strategy


def test_the_server_vad_threshold_reaches_the_decode(server, client, case) -> None:
    """No frame of speech is more likely than 1.0: a VAD asked for that threshold hears nothing, so
    nothing is decoded (the same audio gave the call's words above). Sent as curl sends it (the
    object as JSON in one field) and as the `openai` client does (bracketed fields)."""
    _, audio = case
    with server.client(headers=AUTH) as c:
        r = c.post("/v1/audio/transcriptions", files={"file": ("call.wav", audio, "audio/wav")},
                   data={"response_format": "verbose_json",
                         "chunking_strategy": '{"type": "server_vad", "threshold": 1.0}'})
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "" and r.json()["segments"] == []
    t = client.audio.transcriptions.create(file=("call.wav", audio), model="whisper-1",
                                           chunking_strategy={"type": "server_vad", "threshold": 1.0})
    assert t.text == ""


def test_a_bad_chunking_strategy_is_a_400_with_the_reason(server, client) -> None:
    audio = wav_bytes(np.zeros(16000, np.float32))
    cases = [
        ({"chunking_strategy": "fast"}, 'neither "auto" nor a server_vad object'),
        ({"chunking_strategy": '{"type": "server_vad", "threshold": 1.5}'}, "chunking_strategy.threshold"),
        ({"chunking_strategy": '{"type": "semantic_vad"}'}, "chunking_strategy.type must be 'server_vad'"),
        ({"chunking_strategy": '{"type": "server_vad", "eagerness": "low"}'}, "unknown field 'eagerness'"),
        ({"chunking_strategy": '{"type": "server_vad", "silence_duration_ms": 2.5}'}, "must be an integer"),
        ({"chunking_strategy": '{"type": "server_vad", "prefix_padding_ms": -1}'}, "prefix_padding_ms"),
        ({"chunking_strategy": '{"type": "server_vad"'}, "not valid JSON"),
        ({"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "high"}, "must be a number"),
        ({"chunking_strategy": "auto", "chunking_strategy[type]": "server_vad"}, "not both"),
    ]
    with server.client(headers=AUTH) as c:
        for fields, why in cases:
            r = c.post("/v1/audio/transcriptions", files={"file": ("a.wav", audio, "audio/wav")}, data=fields)
            assert r.status_code == 400, (fields, r.status_code, r.text)
            assert why in r.json()["detail"] and why in r.json()["error"]["message"], (why, r.json())
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(file=("a.wav", audio), model="whisper-1",
                                           chunking_strategy={"type": "server_vad", "threshold": 2})
    assert "chunking_strategy.threshold" in str(e.value)
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
