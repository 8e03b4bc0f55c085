"""API keys are compared in constant time, on every path that checks one.

Timing itself is too noisy to measure on a shared 2-core machine, so the test checks the mechanism:
every key check in the server goes through `hmac.compare_digest` (observed through a wrapper that
calls the real one), with the presented and the expected key, whatever the presented key's length
or how many characters it shares with the real one; nothing returns early on a near miss.
"""

from __future__ import annotations

import hmac

import pytest
from fastapi.testclient import TestClient

from app import auth
from tests.app.conftest import API_KEY
from transcription.settings import Settings

WRONG_KEYS = [
    "x",  # short
    API_KEY[:-1],  # a prefix of the key
    API_KEY[:-1] + "X",  # one character off at the end
    "X" + API_KEY[1:],  # ... at the start
    API_KEY + "x",  # the key and more
    "k" * 500,  # long
    "ключ-" + API_KEY,  # not ASCII
]


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    return calls


def test_every_key_check_is_constant_time(fw_engine, compared) -> None:
    from app.main import create_app

    expected = API_KEY.encode()
    with TestClient(create_app(Settings(api_key=API_KEY), engine=fw_engine)) as client:
        for key in WRONG_KEYS:
            raw = key.encode()  # header bytes as sent on the wire
            for headers in ({"Authorization": b"Bearer " + raw}, {"X-API-Key": raw}):
                compared.clear()
                r = client.post("/transcribe-s3", json={"s3_input_path": "s3://bucket/k.wav"}, headers=headers)
                assert r.status_code == 401, (key, r.status_code)
                assert compared and all(b == expected and a != expected for a, b in compared), (key, compared)
        compared.clear()
        r = client.get("/openapi.json")
        assert r.status_code == 200 and compared == []  # public paths compare nothing
        r = client.post("/transcribe-s3", json={"s3_input_path": "s3://bucket/../k.wav"},
                        headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code == 422  # the right key passes (and the bad path is refused after it)
        assert len(compared) >= 1 and all(a == b == expected for a, b in compared)


def test_key_matches_has_no_shortcut() -> None:
    """The comparison function alone: equal only for the exact key, for any input type it may see."""
    expected = API_KEY.encode()
    assert auth.key_matches(expected, API_KEY)
    for key in [*WRONG_KEYS, "", "\udcff" + API_KEY]:
        assert not auth.key_matches(expected, key), key
    assert not auth.key_matches(expected, None)
