"""The SSRF rules of `/transcribe-url` live in the core (`transcription/urlfetch.py`), where webhooks
use them too; the server imports them from here."""

from transcription.urlfetch import GuardedBackend, checked_addresses, fetch_url, parse_allowlist, refusal

__all__ = ["GuardedBackend", "checked_addresses", "fetch_url", "parse_allowlist", "refusal"]
