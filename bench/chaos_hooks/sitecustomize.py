"""A FAKE, for the chaos run only: a chunk whose decoding kills the process decoding it.

Real inputs like that exist (a decoder bug that segfaults, an input that makes the OOM killer
strike), but none can be produced on demand, so the chaos run fakes one: `bench/chaos.py` puts this
directory on the GPU worker's PYTHONPATH and sets `STT_CHAOS_POISON_MARKER`; a chunk whose bytes
contain the marker then SIGKILLs the pool process that decodes it, every time, exactly as a
segfault in the decoder would. Nothing in the project imports this file, production never has this
directory on its path, and without the variable it does nothing.
"""

from __future__ import annotations

import os

_MARKER = os.environ.get("STT_CHAOS_POISON_MARKER", "").encode()

if _MARKER:
    import signal

    from transcription import audio as _audio

    _decode = _audio.decode_audio

    def _decode_or_die(source, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(source, bytes | bytearray | memoryview) and _MARKER in bytes(source):
            os.kill(os.getpid(), signal.SIGKILL)  # what a crash in the decoder does to its process
        return _decode(source, **kwargs)

    _audio.decode_audio = _decode_or_die
