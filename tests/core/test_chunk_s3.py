"""The shared S3 chunk function against moto's real S3 endpoint: layout, manifest, write-once."""

from __future__ import annotations

import json

from tests.support.speech import word_error_rate
from transcription import storage
from transcription.chunk import transcribe_s3_chunk
from transcription.transcript import ChunkTranscript


def test_transcribes_a_chunk_into_the_layout_once(moto, bucket, fw_engine, sentences, speech_files) -> None:
    s3 = moto.client("s3")
    key = "sessions/meet1/chunks/007.wav"
    s3.put_object(Bucket=bucket, Key=key, Body=speech_files[0].read_bytes())
    s3.put_object(Bucket=bucket, Key="sessions/meet1/manifest.json",
                  Body=json.dumps({"language": "en", "prompt": "folder"}).encode())
    first = transcribe_s3_chunk(bucket, key, engine=fw_engine)
    assert first.written and not first.skipped
    stored = ChunkTranscript.model_validate_json(
        s3.get_object(Bucket=bucket, Key="transcripts/meet1/chunks/7.json")["Body"].read())
    assert stored.session_id == "meet1" and stored.chunk_index == 7 and stored.source_key == key
    assert stored.options == {"language": "en", "prompt": "folder"}  # the manifest applied
    assert word_error_rate(sentences[0], stored.text) < 0.25
    again = transcribe_s3_chunk(bucket, key, engine=fw_engine)
    assert again.skipped and not again.written and again.transcript == stored


def test_conditional_put_refuses_an_overwrite(moto, bucket) -> None:
    assert storage.put_json(bucket, "transcripts/x/chunks/1.json", {"a": 1}, if_absent=True)
    assert not storage.put_json(bucket, "transcripts/x/chunks/1.json", {"a": 2}, if_absent=True)
    assert storage.get_json(bucket, "transcripts/x/chunks/1.json") == {"a": 1}
