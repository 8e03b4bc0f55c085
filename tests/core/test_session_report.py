"""The session report (`transcription.session_report`) against moto's S3, with synthetic chunk
transcripts: states, missing chunks, and pages that never repeat or skip a session."""

from __future__ import annotations

import pytest

from tests.tasks.test_sessions import chunk, fail, transcribe, upload
from transcription import sessions
from transcription.errors import InvalidKeyError, NotFoundError
from transcription.session_report import session_page, session_report


def test_report_states_and_missing_chunks(moto, bucket) -> None:
    s3 = moto.client("s3")
    upload(s3, bucket, "r1", [0, 2], {"total_chunks": 4})
    transcribe(bucket, chunk("r1", 0, "one"))
    fail(bucket, "r1", 2, "not audio")
    r = session_report(bucket, "r1", chunks=True)
    assert r.state == "in progress" and r.total_chunks == 4 and r.progress == 0.5
    assert r.missing == [1, 3] and r.queued == [] and r.counts.missing == 2
    assert [(f.index, f.error, f.reason) for f in r.failed] == [(2, "bad_audio", "not audio")]
    assert [(d.index, d.status) for d in r.chunks or []] == [(0, "transcribed"), (1, "missing"), (2, "failed"),
                                                             (3, "missing")]
    assert r.first_upload_at is not None and r.transcript_keys == {}
    assert session_report(bucket, "r1", combining=True).state == "combining"

    upload(s3, bucket, "r1", [1, 3])
    transcribe(bucket, chunk("r1", 1, "two"))
    transcribe(bucket, chunk("r1", 3, "four"))
    assert session_report(bucket, "r1").state == "complete"
    sessions.write_session_transcript(bucket, sessions.build_session_transcript(bucket, "r1"))
    r = session_report(bucket, "r1")
    assert r.state == "partial" and r.partial and r.combined_at and set(r.transcript_keys) == {
        "json", "verbose_json", "text", "srt", "vtt", "tsv"}
    assert r.progress == 1.0


def test_unknown_and_invalid_ids(moto, bucket) -> None:
    with pytest.raises(NotFoundError):
        session_report(bucket, "nobody")
    for bad in ("a..b", "../x", "", "a/b"):
        with pytest.raises(InvalidKeyError):
            session_report(bucket, bad)
    with pytest.raises(InvalidKeyError):
        session_page(bucket, cursor="a..b")


def test_pages_follow_key_order_without_repeats(moto, bucket) -> None:
    s3 = moto.client("s3")
    # "abc-x/" sorts before "abc/" as a key ('-' < '/') but after "abc" as an id: pages follow keys
    ids = ["abc", "abc-x", "abc.1", "abc0", "abd", "b", "z9"]
    for i, sid in enumerate(ids):
        upload(s3, bucket, sid, [0, 1], {"total_chunks": 2} if i % 2 else None)
    all_ids, cursor = [], None
    while True:
        page = session_page(bucket, limit=2, cursor=cursor)
        assert len(page.sessions) <= 2
        all_ids += [r.session_id for r in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(all_ids) == sorted(ids) and len(all_ids) == len(ids)
    whole = session_page(bucket, limit=len(ids))
    assert len(whole.sessions) == len(ids) and whole.next_cursor is None  # a full last page says it is the last
    first = session_page(bucket, limit=len(ids) - 1)
    assert first.next_cursor is not None and len(session_page(bucket, cursor=first.next_cursor).sessions) == 1
    only = session_page(bucket, state="in progress", limit=50)
    assert sorted(r.session_id for r in only.sessions) == sorted(ids[1::2]) and only.next_cursor is None
    scanned = session_page(bucket, state="in progress", limit=50, max_scanned=3)
    assert scanned.next_cursor is not None and len(scanned.sessions) <= 3
