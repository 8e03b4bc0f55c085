"""A recorder's session with the settings a deployment runs: boundary repair and the hallucination
guard on (issue 21). The same stack, streams and checks as tests/router/test_streams.py (which runs
with both off, to measure how the pieces decode), in a module of its own so the two stacks never run
at once; the whole stream, the bar, goes through the same server with the same settings.

With the defaults the three ~10 s pieces are regrouped (shorter than BOUNDARY_REGROUP_BELOW_S) and
the call is transcribed again as one piece, its audio the pieces' decodes end to end (the same
samples as the whole stream's decode but for one AAC frame at each MP4 joint). The MP4 session was
once left out: direct it came back at 0.321 and 0.272 against 0.235 for the whole stream, two
server runs on the same bytes giving two texts. Both causes are fixed: Whisper's temperature
fallback now samples with a seed (DECODE_SEED), and a regrouped piece that adds words after its
chunks' last word (Whisper's tail over the end of its input) is refused, so the chunks' words and
windows stand (transcription/agreement.py). The pieces' own decoding is covered with repair off in
test_streams.py.
"""

from __future__ import annotations

import pytest

from tests.router.test_streams import direct_session, open_stack, queued_session, record_all, whole_stream_wer

pytestmark = pytest.mark.timeout(900)

KINDS = ("webm", "ogg", "mp4")


@pytest.fixture(scope="module")
def stack(moto):
    with open_stack(moto, "streams-defaults") as s:  # BOUNDARY_REPAIR and HALLUCINATION_GUARD as shipped
        assert s.settings.boundary_repair and s.settings.hallucination_guard
        yield s


@pytest.fixture(scope="module")
def recorded() -> dict[str, bytes]:
    return {kind: data for kind, data in record_all().items() if kind in KINDS}


@pytest.fixture(scope="module")
def whole_wer(stack, recorded) -> dict[str, float]:
    return whole_stream_wer(stack, recorded)


@pytest.mark.parametrize("kind", KINDS)
def test_direct_session_with_repair_and_guard_on(stack, recorded, whole_wer, kind) -> None:
    direct_session(stack, recorded, whole_wer, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_queued_session_with_repair_and_guard_on(stack, recorded, whole_wer, env, kind) -> None:
    queued_session(stack, recorded, whole_wer, env, kind)
