"""The offline diarizer on real speech: pyannote's two-person call (`sample.wav` with `sample.rttm`),
whole and cut into chunks that are diarized alone and linked by their stored voice centroids."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from bench.speakers import der
from tests.support.real_speech import concat, load_sample
from transcription.combine import combine_chunks
from transcription.errors import ModelError
from transcription.settings import Settings
from transcription.speakers import files
from transcription.transcript import ChunkTranscript

pytestmark = pytest.mark.whisperx  # torch and pyannote.audio come with whisperx


@pytest.fixture(scope="module")
def diarizer():
    from transcription.speakers.local import LocalDiarizer

    return LocalDiarizer(Settings())


def chunks_of(diarizer, rec, chunk_s: float) -> list[ChunkTranscript]:
    step = int(chunk_s * 16000)
    out = []
    for i, lo in enumerate(range(0, len(rec.samples), step)):
        samples = rec.samples[lo:lo + step]
        d = diarizer.diarize(samples)
        out.append(ChunkTranscript(session_id="s", chunk_index=i, duration=round(len(samples) / 16000, 3),
                                   engine="e", model="m", turns=d.turns, speakers=d.speakers, diarizer=diarizer.name))
    return out


def test_the_call_is_two_people_and_chunks_keep_them_apart_and_consistent(diarizer) -> None:
    call = replace(load_sample(), utterances=())
    session = concat([call, call], gap_s=1.0)  # 61 s: the same two people twice
    whole = diarizer.diarize(session.samples)
    whole_der, found = der(session, [(t.start, t.end, t.speaker) for t in whole.turns])
    assert found == 2 and whole_der < 0.08
    chunks = chunks_of(diarizer, session, 10.0)
    assert all(c.speakers and len(c.speakers[0].embedding) == 192 for c in chunks if c.turns)
    linked = combine_chunks("s", chunks, settings=Settings())
    assert [s.id for s in linked.speakers] == ["SPEAKER_1", "SPEAKER_2"]
    linked_der, _ = der(session, [(t.start, t.end, t.speaker) for t in linked.turns])
    assert linked_der <= whole_der + 0.03, (linked_der, whole_der)
    # per-chunk labels would fail this: each chunk's SPEAKER_00 is whoever talks first in it
    local_der, _ = der(session, [(t.start + c.chunk_index * 10.0, t.end + c.chunk_index * 10.0, t.speaker)
                                 for c in chunks for t in c.turns or []])
    assert local_der > linked_der + 0.1, (local_der, linked_der)


def test_a_quieter_noisier_repeat_links_to_the_same_two_people(diarizer) -> None:
    """bench.speakers' `call-x3` in 30 s chunks: the cut at 60 s leaves the quiet, noisy copy's last
    sentence of Diane (1.8 s) and a 1.9 s mixed voice as local speakers of the chunk that also holds the
    loud copy's Diane, and the tail chunk hears the same sentence again (2.2 s). Linked by distance
    with the chunk's cannot-link alone, the two short copies of one sentence make a third person and
    the mixed voice a fourth; a speaker must be anchored by a voice heard 3 s or more."""
    from bench.speakers import sessions

    session = sessions()["call-x3"]
    whole = diarizer.diarize(session.samples)
    whole_der, _ = der(session, [(t.start, t.end, t.speaker) for t in whole.turns])
    chunks = chunks_of(diarizer, session, 30.0)
    old = combine_chunks("s", chunks, settings=Settings(speaker_anchor_s=0))
    old_der, _ = der(session, [(t.start, t.end, t.speaker) for t in old.turns])
    assert len(old.speakers) > 2 and old_der > whole_der + 0.03, (len(old.speakers), old_der, whole_der)
    linked = combine_chunks("s", chunks, settings=Settings())
    linked_der, _ = der(session, [(t.start, t.end, t.speaker) for t in linked.turns])
    assert [s.id for s in linked.speakers] == ["SPEAKER_1", "SPEAKER_2"]
    assert linked_der <= whole_der + 0.03, (linked_der, whole_der)
    # a session speaker holds two voices of one chunk: the short one went with the long one
    members = [m.split(":")[0] for s in linked.speakers for m in s.members]
    assert len(members) > len(set(members))
    turns = sorted(linked.turns, key=lambda t: (t.speaker, t.start))
    assert all(a.end < b.start for a, b in itertools.pairwise(turns) if a.speaker == b.speaker)


def test_the_offline_diarizer_needs_no_network(tmp_path) -> None:
    """In a fresh process whose every socket connect fails: load, diarize the call, two speakers."""
    script = textwrap.dedent("""
        import sys, socket
        def refuse(event, args):
            if event == "socket.connect":
                raise OSError("no network in this test")
        sys.addaudithook(refuse)
        from transcription.settings import Settings
        from transcription.speakers.local import LocalDiarizer
        from tests.support.real_speech import load_sample
        d = LocalDiarizer(Settings()).diarize(load_sample().samples)
        print("SPEAKERS", len(d.speakers), len(d.turns))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(__import__("pathlib").Path.cwd()),
                              "HOME": str(tmp_path), "HF_HUB_OFFLINE": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("SPEAKERS"))
    assert line.split()[1] == "2" and int(line.split()[2]) >= 4


def test_altered_weights_are_refused(tmp_path, monkeypatch) -> None:
    good = files.weight_path(files.CAMPPLUS)
    assert good.is_file()
    wrong = files.WeightFile(files.CAMPPLUS.path, "0" * 64, "Apache-2.0")
    files._verified.discard(good)
    with pytest.raises(ModelError, match="sha256"):
        files.weight_path(wrong)
    missing = files.WeightFile("models/not-there.pt", "0" * 64, "MIT")
    with pytest.raises(ModelError, match="missing"):
        files.weight_path(missing)
