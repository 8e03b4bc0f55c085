"""Fixtures shared by every component's tests: speech, settings, engines, the services.

Tiers: a test that uses moto's server, the shared Redis or the Whisper model is marked `moto`,
`redis` or `model` from the fixtures it uses (directly or through other fixtures: `moto`/`bucket`,
`redis_url`, `fw_engine`/`load_engine_named`), or by hand when it starts those itself (the demo);
`make test-fast` runs the rest. In that tier the engine refuses to load, here and (MODEL points
nowhere) in the processes a test starts, so a test that needs the model without saying so fails there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.speech import SENTENCES, speak
from transcription.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]
# One model cache for the whole run (and across runs): assembling the model once is the point.
os.environ.setdefault("MODEL_CACHE_DIR", str(ROOT / ".cache" / "models"))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# marker -> the fixtures whose use means a test needs what the marker names
NEEDS = {
    "moto": {"moto", "bucket"},
    "redis": {"redis_url"},
    "model": {"fw_engine", "load_engine_named"},
}
SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures:
                item.add_marker(marker)
        if item.get_closest_marker("whisperx"):
            item.add_marker("model")


NO_MODEL = "/the-fast-tier-has-no-model"  # MODEL for the processes a fast test starts: refused with the reason


def pytest_configure(config: pytest.Config) -> None:
    if "not model" in (config.option.markexpr or ""):  # the fast tier: no model may load, here or in a child
        import transcription.engines

        def refuse(*_: object, **__: object) -> None:
            raise RuntimeError("this test loads the Whisper model: use the fw_engine fixture (it marks it `model`)")

        transcription.engines.load_engine = refuse  # type: ignore[assignment]
        os.environ["MODEL"] = NO_MODEL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis every test shares (127.0.0.1:6379, running before the tests; never flushed: use
    unique key prefixes and queue names). Using it marks a test `redis`."""
    import redis

    try:
        redis.Redis.from_url(SHARED_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        pytest.fail(f"this test needs the Redis at {SHARED_REDIS_URL}: {e}")
    return SHARED_REDIS_URL


@pytest.fixture(scope="session")
def settings() -> Settings:
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return SENTENCES


@pytest.fixture(scope="session")
def speech_files(sentences: list[str]) -> list[Path]:
    """One wav per sentence, generated once per test session (and cached on disk)."""
    return [speak(s) for s in sentences]


_ENGINES: dict[str, object] = {}


@pytest.fixture(scope="session")
def load_engine_named(settings: Settings):
    """Load an engine by name once per test session (model load takes seconds)."""
    from transcription.engines import load_engine

    def load(name: str):
        if name not in _ENGINES:
            _ENGINES[name] = load_engine(settings.model_copy(update={"engine": name}))
        return _ENGINES[name]

    return load


@pytest.fixture(scope="module")
def fw_engine(settings: Settings):
    """faster-whisper, loaded afresh for each test module. Whisper's temperature fallback samples
    (seeded by DECODE_SEED when the engine loads), so a shared engine would make one module's
    results depend on what every module before it decoded; a module's own engine makes them
    depend only on that module's tests."""
    from transcription.engines import load_engine

    return load_engine(settings.model_copy(update={"engine": "faster-whisper"}))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set environment variables for one test; the settings cache is cleared before and after."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def moto():
    """moto's server (S3, SQS, EventBridge, EC2, Auto Scaling) for the whole test session.

    The test process itself talks to it too: its endpoint goes into this process's environment.
    """
    from tests.support.services import MotoServer

    server = MotoServer()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    get_settings.cache_clear()
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()
    server.stop()


@pytest.fixture
def bucket(moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh S3 bucket on moto, set as S3_BUCKET for this test (and for processes it starts)."""
    from tests.support.services import unique

    name = unique("test")
    moto.client("s3").create_bucket(Bucket=name)
    monkeypatch.setenv("S3_BUCKET", name)
    get_settings.cache_clear()
    yield name
    get_settings.cache_clear()
