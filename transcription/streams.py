"""Streams cut into pieces: a live recorder's timeslices (browser MediaRecorder, phones, ffmpeg to a pipe).

Only the first piece of such a stream holds its header; every later piece starts in the middle (a
WebM/Matroska Cluster, an Ogg page after the codec's header pages, an MP4 `moof` fragment) and no
decoder opens it alone. This module tells the two apart from the bytes (never the extension),
takes the header from a piece that starts a stream, and puts the two together so the one decode
path (`transcription.audio.decode_audio`) reads a continuation with the stream's own timestamps.

    header (what the first piece holds before its media)         a continuation starts with
    webm   EBML header + Segment up to the first Cluster          a Cluster (1F 43 B6 75)
    ogg    the pages of granule position 0 (OpusHead, OpusTags)   a page without the BOS flag
    mp4    the boxes before the first `moof` (ftyp + moov)        `moof` (or `styp`/`sidx` before it)

`find_stream_header` is the S3 side: the nearest earlier chunk of the session that starts a
stream of the same kind. When none is uploaded yet it raises `StreamHeaderPending`, a retryable
error: the piece waits (retries, then the sweeper) instead of failing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from transcription.errors import AudioError, StreamHeaderPending, TranscriptionError

if TYPE_CHECKING:
    from transcription.layout import ChunkKey
    from transcription.settings import Settings

log = logging.getLogger(__name__)

StreamKind = Literal["webm", "ogg", "mp4"]
MAX_HEADER_BYTES = 1 << 20  # a recorder's header is a few hundred bytes (webm, ogg) to a few KB (mp4)
HEAD_BYTES = 64  # enough to tell a stream's start from its continuation

EBML_ID = b"\x1a\x45\xdf\xa3"
SEGMENT_ID = b"\x18\x53\x80\x67"
CLUSTER_ID = b"\x1f\x43\xb6\x75"
UNKNOWN_SIZE_8 = b"\x01\xff\xff\xff\xff\xff\xff\xff"
MP4_FRAGMENT_BOXES = (b"moof", b"styp", b"sidx", b"emsg", b"prft")


def starts_stream(head: bytes) -> StreamKind | None:
    """The kind of stream whose header these first bytes begin, or None."""
    if head[:4] == EBML_ID:
        return "webm"
    if head[:4] == b"OggS" and len(head) > 5 and head[5] & 0x02:  # beginning-of-stream page
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    return None


def continues_stream(head: bytes) -> StreamKind | None:
    """The kind of stream these first bytes continue (a piece without its stream's header), or None."""
    if head[:4] == CLUSTER_ID:
        return "webm"
    if head[:4] == b"OggS" and len(head) > 5 and not head[5] & 0x02:
        return "ogg"
    if head[4:8] in MP4_FRAGMENT_BOXES:
        return "mp4"
    return None


# --- Matroska / WebM -----------------------------------------------------------------------------
def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `pos`: (value, its length); ValueError if there is none."""
    if pos >= len(data) or data[pos] == 0:
        raise ValueError("bad EBML variable-length integer")
    first = data[pos]
    length = 9 - first.bit_length()
    if pos + length > len(data):
        raise ValueError("EBML integer runs past the data")
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1:pos + length]:
        value = (value << 8) | b
    return value, length


def _unknown(size: int, length: int) -> bool:
    return size == (1 << (7 * length)) - 1


def _segment(data: bytes) -> tuple[int, int]:
    """Where the Segment's size field is and how long it is (after the EBML header element)."""
    _, n = _vint(data, 0, keep_marker=True)
    size, m = _vint(data, n, keep_marker=False)
    pos = n + m + size  # past the EBML header element
    if data[pos:pos + 4] != SEGMENT_ID:
        raise ValueError("no Segment after the EBML header")
    _, m = _vint(data, pos + 4, keep_marker=False)
    return pos + 4, m


def _webm_elements(data: bytes) -> list[int]:
    """Offsets of the Segment's children up to and including the Clusters (top level only)."""
    size_at, m = _segment(data)
    offsets = []
    pos = size_at + m
    while pos + 4 <= len(data):
        offsets.append(pos)
        is_cluster = data[pos:pos + 4] == CLUSTER_ID
        _, n = _vint(data, pos, keep_marker=True)
        size, m2 = _vint(data, pos + n, keep_marker=False)
        if _unknown(size, m2):
            if not is_cluster:
                raise ValueError("an element of unknown size that is not a Cluster")
            nxt = data.find(CLUSTER_ID, pos + n + m2)  # a live muxer's cluster: the next one by its id
            if nxt < 0:
                break
            pos = nxt
        else:
            pos += n + m2 + size
    return offsets


def _webm_header(data: bytes) -> bytes:
    """Everything before the first Cluster, with the Segment's size made unknown (so the clusters
    of a later piece, appended after it, are inside the Segment whatever size it stated)."""
    size_at, m = _segment(data)
    for pos in _webm_elements(data):
        if data[pos:pos + 4] == CLUSTER_ID:
            return data[:size_at] + UNKNOWN_SIZE_8 + data[size_at + m:pos]
    raise ValueError("no Cluster in the first piece")


def webm_clusters(data: bytes) -> list[int]:
    """Byte offsets of the top-level Clusters of a WebM stream (where a recorder's piece may start)."""
    return [pos for pos in _webm_elements(data) if data[pos:pos + 4] == CLUSTER_ID]


# --- Ogg ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OggPage:
    offset: int
    length: int
    granule: int
    flags: int


def ogg_pages(data: bytes) -> list[OggPage]:
    """The pages of an Ogg stream, in order (stops at the first byte that is not a page)."""
    pages = []
    pos = 0
    while pos + 27 <= len(data) and data[pos:pos + 4] == b"OggS":
        nsegs = data[pos + 26]
        if pos + 27 + nsegs > len(data):
            break
        length = 27 + nsegs + sum(data[pos + 27:pos + 27 + nsegs])
        pages.append(OggPage(pos, length, int.from_bytes(data[pos + 6:pos + 14], "little", signed=True),
                             data[pos + 5]))
        pos += length
    return pages


def _ogg_header(data: bytes) -> bytes:
    """The header pages: those before the first page that carries audio (granule position > 0)."""
    end = 0
    for page in ogg_pages(data):
        if page.granule > 0:
            if end == 0:
                raise ValueError("no header pages before the audio")
            return data[:end]
        end = page.offset + page.length
    raise ValueError("no audio page in the first piece")


# --- MP4 ---------------------------------------------------------------------------------------------
def mp4_boxes(data: bytes) -> list[tuple[int, bytes, int]]:
    """Top-level boxes: (offset, type, size); stops at a box that runs past the data."""
    boxes = []
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if size == 1 and pos + 16 <= len(data):
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        elif size == 0:
            size = len(data) - pos
        if size < 8:
            break
        boxes.append((pos, kind, size))
        pos += size
    return boxes


def _mp4_header(data: bytes) -> bytes:
    kinds = []
    for offset, kind, _ in mp4_boxes(data):
        if kind in MP4_FRAGMENT_BOXES:
            if b"moov" not in kinds:
                raise ValueError("no moov box before the first fragment")
            return data[:offset]
        kinds.append(kind)
    raise ValueError("no fragment (moof) in the first piece: not a fragmented MP4")


def fragment_starts(data: bytes, kind: StreamKind) -> list[int]:
    """Where a piece of this stream may start: its Clusters, audio pages or fragments (for cutting)."""
    if kind == "webm":
        return webm_clusters(data)
    if kind == "ogg":
        return [p.offset for p in ogg_pages(data) if p.granule > 0]
    starts, seen_moof = [], False
    for offset, box, _ in mp4_boxes(data):
        if box in MP4_FRAGMENT_BOXES and not seen_moof:
            starts.append(offset)
            seen_moof = True
        elif box == b"mdat":
            seen_moof = False
    return starts


def stream_header(data: bytes) -> tuple[StreamKind, bytes]:
    """The kind and the header of a piece that starts a stream; AudioError when it has none usable."""
    kind = starts_stream(data[:HEAD_BYTES])
    if kind is None:
        raise AudioError("the piece does not start a webm, ogg or mp4 stream")
    try:
        header = {"webm": _webm_header, "ogg": _ogg_header, "mp4": _mp4_header}[kind](data)
    except (ValueError, IndexError) as e:
        raise AudioError(f"cannot take the {kind} stream's header from its first piece: {e}") from None
    if len(header) > MAX_HEADER_BYTES:
        raise AudioError(f"the {kind} stream's header is {len(header)} bytes, over {MAX_HEADER_BYTES}")
    return kind, header


# --- S3: the session's chunk that starts the stream ------------------------------------------------
@dataclass(frozen=True)
class StreamHeader:
    kind: StreamKind
    header: bytes
    from_index: int  # the chunk whose header it is


def _uploaded(bucket: str, session_id: str, s: Settings) -> dict[int, str]:
    from transcription import layout, storage

    uploaded: dict[int, str] = {}
    for c in layout.chunk_keys(storage.list_keys(bucket, layout.chunks_prefix(session_id), settings=s)):
        uploaded.setdefault(c.index, c.key)  # the first key listed for an index is the chunk (as sessions.py)
    return uploaded


def locate_stream_start(bucket: str, uploaded: Mapping[int, str], index: int, kind: StreamKind,
                        s: Settings) -> int:
    """The index of the nearest chunk before `index` that starts a `kind` stream, looking back past
    other continuations of it (one ranged GET of a few bytes per chunk looked at).

    `StreamHeaderPending` (retryable) while a chunk it could be is not uploaded yet; `AudioError`
    when every chunk before it is there and none starts such a stream."""
    from transcription import storage

    for i in range(index - 1, -1, -1):
        key = uploaded.get(i)
        if key is None:
            raise StreamHeaderPending(
                f"waiting for stream header: chunk {index} continues a {kind} stream and chunk {i}, "
                "which may start it, is not uploaded yet")
        try:
            head = storage.get_range(bucket, key, 0, HEAD_BYTES, settings=s)
        except TranscriptionError as e:
            raise StreamHeaderPending(f"waiting for stream header: chunk {i} cannot be read ({e.reason})") from e
        if continues_stream(head) == kind:
            continue
        if starts_stream(head) == kind:
            return i
        break
    raise AudioError(f"chunk {index} continues a {kind} stream, and no chunk before it starts one "
                     "(the stream's header is missing)")


def find_stream_header(bucket: str, chunk: ChunkKey, kind: StreamKind, *,
                       settings: Settings | None = None) -> StreamHeader:
    """The header for `chunk`, a continuation of a `kind` stream: that of the session's chunk that
    starts the stream (`locate_stream_start`, whose errors it raises)."""
    from transcription import storage
    from transcription.settings import get_settings

    s = settings or get_settings()
    uploaded = _uploaded(bucket, chunk.session_id, s)
    index = locate_stream_start(bucket, uploaded, chunk.index, kind, s)
    key = uploaded[index]
    data = storage.get_bytes(bucket, key, max_bytes=s.max_chunk_mb << 20, settings=s)
    found, header = stream_header(data)
    return StreamHeader(found, header, index)


MAX_WAITING_CHECKS = 50  # `sessions status` looks at this many pending chunks at most


def waiting_for_header(bucket: str, session_id: str, uploaded: Mapping[int, str], pending: list[int], *,
                       settings: Settings | None = None) -> dict[int, str]:
    """Pending chunks that wait for their stream's first chunk, with the reason (for `sessions status`)."""
    from transcription import storage
    from transcription.settings import get_settings

    s = settings or get_settings()
    waiting: dict[int, str] = {}
    for index in pending[:MAX_WAITING_CHECKS]:
        try:
            kind = continues_stream(storage.get_range(bucket, uploaded[index], 0, HEAD_BYTES, settings=s))
            if kind is not None:
                locate_stream_start(bucket, uploaded, index, kind, s)
        except StreamHeaderPending as e:
            waiting[index] = e.reason
        except TranscriptionError:
            continue  # a bad chunk: its transcription says why
    return waiting
