"""Redis leases, one-shot flags and delivery counters: what keeps two workers off the same chunk.

A lease is `SET key token NX PX ttl`, renewed by a daemon thread while its holder works and
deleted only by its holder (compare-and-delete), so it expires `LEASE_TTL_S` after the holder dies.
Redis failures surface as `NetworkError` (retryable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from transcription.errors import NetworkError
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)

PREFIX = "stt:"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
          "else return 0 end")


# `redis` is imported where it is used: the router publishes through `tasks.enqueue`, which uses the
# one-shot flag here, and its Lambda package has no redis (the flag is skipped there).

@lru_cache(maxsize=8)
def _client(url: str, pid: int) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30,
                                decode_responses=True)


def redis_client(settings: Settings | None = None) -> Any:
    """A Redis client for this process (a new one after a fork)."""
    return _client((settings or get_settings()).redis_url, os.getpid())


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    import redis

    try:
        yield
    except redis.RedisError as e:
        raise NetworkError(f"redis ({what}): {e}") from e


# --- the names leases are taken on: one place, so a reader (the scaler, the worker's main process)
# names the same lease as its holder ---

def chunk_name(bucket: str, key: str) -> str:
    """A chunk's lease: one delivery transcribes it at a time."""
    return f"{bucket}/{key}"


def combine_name(bucket: str, session_id: str) -> str:
    """A session's combine lease: one combine of it at a time."""
    return f"combine:{bucket}/{session_id}"


def drain_name(bucket: str) -> str:
    """The drain's lease: one drain of a bucket at a time (the scaler does not scale in meanwhile)."""
    return f"drain:{bucket}"


def lease_key(name: str) -> str:
    return f"{PREFIX}lease:{name}"


class Lease:
    """An exclusive, expiring, self-renewing claim on a name."""

    def __init__(self, name: str, ttl_s: float, settings: Settings | None = None) -> None:
        self.key = lease_key(name)
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.token = uuid.uuid4().hex
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _redis(self) -> Any:
        return redis_client(self._settings)

    def acquire(self) -> bool:
        with redis_errors("lease"):
            if not self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
                return False
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.key[-40:]}", daemon=True)
        self._thread.start()
        return True

    def remaining_s(self) -> float:
        """Seconds until the current holder's claim lapses (0 if free)."""
        with redis_errors("lease"):
            ms = self._redis.pttl(self.key)
        return max(0.0, ms / 1000)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self._redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                    log.warning("lease_lost key=%s (expired or taken over)", self.key)
                    return
            except Exception as e:  # keep trying: the lease only lapses after a whole TTL
                log.warning("lease_renew_failed key=%s: %s", self.key, e)

    def release(self) -> None:
        self._stop.set()
        try:
            self._redis.eval(_RELEASE, 1, self.key, self.token)
        except Exception as e:  # it expires by itself
            log.warning("lease_release_failed key=%s: %s", self.key, e)


def is_held(name: str, settings: Settings | None = None) -> bool:
    """Someone holds the lease on `name` right now."""
    with redis_errors("lease"):
        return bool(redis_client(settings).exists(lease_key(name)))


def force_release(name: str, settings: Settings | None = None) -> None:
    """Drop a lease whatever its token: for the worker's main process when a pool process died."""
    with contextlib.suppress(Exception):
        redis_client(settings).delete(lease_key(name))


def set_once(name: str, ttl_s: int, settings: Settings | None = None) -> bool:
    """True for the first caller only (until `ttl_s` passes): a one-shot trigger."""
    with redis_errors("flag"):
        return bool(redis_client(settings).set(f"{PREFIX}once:{name}", "1", nx=True, ex=max(1, ttl_s)))


def clear_once(name: str, settings: Settings | None = None) -> None:
    """Take back a one-shot flag whose action failed, so the next caller acts (best effort: if Redis
    is gone too, the flag lapses and the sweeper acts)."""
    try:
        redis_client(settings).delete(f"{PREFIX}once:{name}")
    except Exception as e:
        log.warning("flag_clear_failed name=%s: %s", name, e)


# --- deliveries that never finished: counted, so a chunk that kills its worker cannot loop ---

def count_start(name: str, settings: Settings | None = None) -> int:
    """Count one more started run of `name`; the count survives the run dying."""
    key = f"{PREFIX}starts:{name}"
    with redis_errors("starts"):
        pipe = redis_client(settings).pipeline()
        pipe.incr(key)
        pipe.expire(key, 7 * 24 * 3600)
        return int(pipe.execute()[0])


def clear_starts(name: str, settings: Settings | None = None) -> None:
    """The run finished (one way or another): forget the unfinished starts."""
    with contextlib.suppress(Exception):
        redis_client(settings).delete(f"{PREFIX}starts:{name}", f"{PREFIX}death:{name}")


def note_death(name: str, reason: str, settings: Settings | None = None) -> None:
    """Remember why the last run died (written by the worker's main process)."""
    with contextlib.suppress(Exception):
        redis_client(settings).set(f"{PREFIX}death:{name}", reason[:500], ex=7 * 24 * 3600)


def last_death(name: str, settings: Settings | None = None) -> str | None:
    with contextlib.suppress(Exception):
        return redis_client(settings).get(f"{PREFIX}death:{name}")
    return None
