"""OpenAI's diarizing transcription on the real server (`stt-router serve` under uvicorn, `DIARIZE`
left off in its settings): `response_format=diarized_json` with and without known speakers, called
with the official `openai` client, and a 400 with the reason for every kind of bad reference.

Audio: pyannote's two-person call with one turn of each person cut out; those turns are the
reference clips (so a clip is never part of the audio it names)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from bench.speakers import faster
from tests.app.conftest import API_KEY, AUTH
from tests.support.real_speech import data_url, load_sample, named_call, person_at, wav_bytes

pytestmark = pytest.mark.whisperx  # the offline diarizer needs torch


@pytest.fixture(scope="module")
def case():
    rest, clips = named_call()
    return rest, clips, wav_bytes(rest.samples)




def test_diarized_json_names_the_known_speakers_with_the_openai_client(server, case) -> None:
    rest, clips, audio = case
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=300)
    t = client.audio.transcriptions.create(
        file=("call.wav", audio), model="gpt-4o-transcribe-diarize", response_format="diarized_json",
        known_speaker_names=["Diane", "Sheila"],
        known_speaker_references=[data_url(clips["Diane"].samples), data_url(clips["Sheila"].samples)])
    assert type(t).__name__ == "TranscriptionDiarized", type(t)  # the client parsed OpenAI's shape
    assert t.task == "transcribe" and abs(t.duration - rest.duration) < 0.05
    assert t.usage is not None and t.usage.type == "duration" and t.usage.seconds == t.duration
    assert {s.speaker for s in t.segments} == {"Diane", "Sheila"}
    assert all(s.type == "transcript.text.segment" and s.end >= s.start for s in t.segments)
    assert len({s.id for s in t.segments}) == len(t.segments)
    assert "chicago" in t.text.lower()
    people = [(s.speaker, person_at(rest, s.start, s.end, 0.8)) for s in t.segments]
    checked = [(got, truth) for got, truth in people if truth]
    # names on their people (a segment at a turn change may go to the other side)
    assert len(checked) >= 4 and sum(got == truth for got, truth in checked) >= 0.8 * len(checked), checked
    assert {truth for got, truth in checked if got == truth} == {"Diane", "Sheila"}, checked


def test_diarized_json_without_known_speakers_labels_them_a_b(server, case) -> None:
    audio = case[2]
    other = faster(load_sample(), 1.25)  # Diane's voice played faster: another person to the model
    with server.client(headers=AUTH) as c:
        r = c.post("/v1/audio/transcriptions", files={"file": ("call.wav", audio, "audio/wav")},
                   data={"response_format": "diarized_json"})
        assert r.status_code == 200, r.text
        assert {s["speaker"] for s in r.json()["segments"]} == {"A", "B"}
        # a known speaker who is not in the recording names no one
        r = c.post("/v1/audio/transcriptions", files={"file": ("call.wav", audio, "audio/wav")},
                   data={"response_format": "diarized_json", "known_speaker_names[]": ["Diane"],
                         "known_speaker_references[]": [data_url(other.cut(11.03 / 1.25, 14.49 / 1.25).samples)]})
        assert r.status_code == 200, r.text
        assert {s["speaker"] for s in r.json()["segments"]} == {"A", "B"}


def test_bad_references_are_a_400_with_the_reason(server, case) -> None:
    _, clips, audio = case
    good = data_url(clips["Diane"].samples)
    short = data_url(clips["Diane"].samples[:16000])
    long = data_url(np.concatenate([clips["Sheila"].samples, clips["Sheila"].samples]))
    silent = data_url(np.zeros(16000 * 3, np.float32))
    junk = "data:audio/wav;base64," + base64.b64encode(b"RIFF....WAVEnot really").decode()
    huge = "data:audio/wav;base64," + base64.b64encode(b"\0" * (900 << 10)).decode()
    cases = [
        ({"known_speaker_names[]": ["Diane"], "known_speaker_references[]": ["https://example.com/d.wav"]},
         "known_speaker_references[0]: only data URLs"),
        ({"known_speaker_names[]": ["Diane", "Sheila"], "known_speaker_references[]": [good]},
         "one reference clip per name"),
        ({"known_speaker_names[]": list("PQRST"), "known_speaker_references[]": [good] * 5}, "at most 4"),
        ({"known_speaker_names[]": ["Diane"], "known_speaker_references[]": [short]}, "1.0 s long"),
        ({"known_speaker_names[]": ["Diane"], "known_speaker_references[]": [long]}, "longer than the maximum of 10 s"),
        ({"known_speaker_names[]": ["Diane"], "known_speaker_references[]": [silent]}, "silent"),
        ({"known_speaker_names[]": ["Diane"], "known_speaker_references[]": [junk]}, "(Diane)"),
        ({"known_speaker_names[]": ["Diane"], "known_speaker_references[]": [huge]}, "maximum size"),
        ({"known_speaker_names[]": ["SPEAKER_1"], "known_speaker_references[]": [good]}, "unnamed speaker"),
    ]
    with server.client(headers=AUTH) as c:
        for fields, why in cases:
            r = c.post("/v1/audio/transcriptions", files={"file": ("call.wav", audio, "audio/wav")},
                       data={"response_format": "diarized_json", **fields})
            assert r.status_code == 400, (why, r.status_code, r.text)
            assert why in r.json()["detail"] and why in r.json()["error"]["message"], (why, r.json())
        r = c.post("/v1/audio/transcriptions", files={"file": ("call.wav", audio, "audio/wav")},
                   data={"response_format": "json", "known_speaker_names[]": ["Diane"],
                         "known_speaker_references[]": [good]})
        assert r.status_code == 400 and "need response_format=diarized_json" in r.json()["detail"]
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200  # the server is fine
