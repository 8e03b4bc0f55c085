"""Named speakers: reference clips of known people, matched by voice to diarized speakers.

A reference is a short clip of one person talking alone, with their name: given as data URLs on
OpenAI's route (`known_speaker_names[]`/`known_speaker_references[]`) or as S3 keys in a session's
manifest (`speakers: [{"name", "reference_key"}]`). Each clip is embedded with the one voice
embedding (CAM++, `embedding.py`) the offline diarizer uses for its speakers, so a clip and a
speaker's stored voice centroid are compared directly: no audio of the session is read again.

Matching (`match_names`): the cosine distance of every (speaker, reference) pair; the closest pair
under `SPEAKER_NAME_THRESHOLD` is named, both leave the table, and so on. A name is given to at most
one speaker and a speaker gets at most one name; a speaker no reference matches keeps its label.
Only voices of the offline diarizer (`local`) are in CAM++'s space: speakers found by another
diarizer keep their labels.

Bounds: at most `MAX_REFERENCES` clips (OpenAI's 4 on the route, 8 in a manifest), each at most
`MAX_REFERENCE_BYTES` and between `MIN_REFERENCE_S` and the caller's maximum duration (OpenAI's 2 to
10 s on the route, up to 30 s in a manifest). Data URLs only: nothing is ever fetched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from transcription.errors import AudioError, NotFoundError, RetryableError, SpeakerReferenceError, TranscriptionError
from transcription.settings import Settings, get_settings
from transcription.speakers.rules import (
    DIARIZER,
    MAX_MANIFEST_REFERENCE_S,
    MAX_REFERENCE_BYTES,
    MAX_REQUEST_REFERENCE_S,
    MAX_REQUEST_REFERENCES,
    MIN_REFERENCE_S,
    MIN_RMS,
    SpeakerReference,
    check_names,
    check_reference_key,
    decode_data_url,
)
from transcription.transcript import ChunkTranscript, SessionSpeaker, Transcript

log = logging.getLogger(__name__)
T = TypeVar("T", bound=Transcript)



@dataclass(frozen=True)
class Reference:
    """A known person: a name and the unit-length embedding of their clip."""

    name: str
    embedding: np.ndarray
    duration: float


def reference_from_bytes(name: str, data: bytes, where: str, *, max_s: float,
                         settings: Settings | None = None) -> Reference:
    """Decode a clip within its bounds and embed it; a `SpeakerReferenceError` naming `where` if bad."""
    from transcription.audio import decode_audio
    from transcription.speakers.cluster import unit
    from transcription.speakers.embedding import get_embedder

    s = settings or get_settings()
    if len(data) > MAX_REFERENCE_BYTES:
        raise SpeakerReferenceError(f"{where}: {len(data)} bytes, over the limit of {MAX_REFERENCE_BYTES >> 10} KiB")
    try:
        audio = decode_audio(data, max_seconds=max_s, timeout_s=s.decode_timeout_s, max_bytes=MAX_REFERENCE_BYTES)
    except AudioError as e:
        raise SpeakerReferenceError(f"{where}: {e.reason}") from None
    if audio.duration < MIN_REFERENCE_S:
        raise SpeakerReferenceError(f"{where}: {audio.duration:.1f} s long; a reference clip is {MIN_REFERENCE_S:g} "
                                    f"to {max_s:g} s of the person talking")
    if float(np.sqrt(np.mean(np.square(audio.samples)))) < MIN_RMS:
        raise SpeakerReferenceError(f"{where}: the clip is silent")
    vector = unit(get_embedder(s).embed([audio.samples]))[0]
    return Reference(name=name, embedding=vector, duration=round(audio.duration, 3))


def request_clips(names: Sequence[str] | None, urls: Sequence[str] | None) -> list[tuple[str, bytes, str]]:
    """OpenAI's `known_speaker_names[]` and `known_speaker_references[]` checked and decoded from their
    data URLs (cheap: nothing is decoded as audio yet): (name, clip bytes, where) per known speaker."""
    names, urls = list(names or []), list(urls or [])
    if len(names) != len(urls):
        raise SpeakerReferenceError(f"known_speaker_names[] has {len(names)} entries and known_speaker_references[] "
                                    f"{len(urls)}: give one reference clip per name")
    if len(names) > MAX_REQUEST_REFERENCES:
        raise SpeakerReferenceError(f"at most {MAX_REQUEST_REFERENCES} known speakers, got {len(names)}")
    checked = check_names(names, "known_speaker_names")
    return [(n, decode_data_url(u, f"known_speaker_references[{i}]"), f"known_speaker_references[{i}] ({n})")
            for i, (n, u) in enumerate(zip(checked, urls, strict=True))]


def embed_clips(clips: Sequence[tuple[str, bytes, str]], *, max_s: float = MAX_REQUEST_REFERENCE_S,
                settings: Settings | None = None) -> list[Reference]:
    """Each (name, clip, where) decoded within its bounds and embedded; the first bad one raises."""
    return [reference_from_bytes(name, data, where, max_s=max_s, settings=settings) for name, data, where in clips]


def match_names(centroids: Mapping[str, Sequence[float]], references: Sequence[Reference],
                threshold: float) -> dict[str, tuple[str, float]]:
    """speaker id -> (name, cosine distance) for the speakers a reference matches (see the module docstring)."""
    from transcription.speakers.cluster import unit

    ids = [k for k, v in centroids.items() if len(v) == len(references[0].embedding)] if references else []
    if not ids:
        return {}
    dist = 1.0 - unit(np.array([centroids[k] for k in ids], dtype=np.float64)) @ np.array(
        [r.embedding for r in references], dtype=np.float64).T
    out: dict[str, tuple[str, float]] = {}
    while True:
        i, j = divmod(int(np.argmin(dist)), dist.shape[1])
        d = float(dist[i, j])
        if not d <= threshold:  # also ends on inf: every pair is taken
            return out
        out[ids[i]] = (references[j].name, round(d, 4))
        dist[i, :] = np.inf
        dist[:, j] = np.inf


def name_speakers(speakers: Sequence[SessionSpeaker], centroids: Mapping[str, Sequence[float]],
                  references: Sequence[Reference], threshold: float) -> tuple[dict[str, str], list[SessionSpeaker]]:
    """Session speakers named where a reference matches: (old label -> new label, the speakers relabelled).

    A matched speaker takes the name; the others are numbered again SPEAKER_1..K in their order of
    first appearance (`speakers` is in that order), so the unnamed labels stay a plain sequence."""
    matched = match_names(centroids, references, threshold)
    relabel: dict[str, str] = {}
    out: list[SessionSpeaker] = []
    n = 0
    for sp in speakers:
        if sp.id in matched:
            name, distance = matched[sp.id]
            relabel[sp.id] = name
            out.append(sp.model_copy(update={"id": name, "name_distance": distance}))
        else:
            n += 1
            relabel[sp.id] = f"SPEAKER_{n}"
            out.append(sp.model_copy(update={"id": relabel[sp.id]}))
    return relabel, out


def relabel_transcript(t: T, relabel: Mapping[str, str]) -> T:
    """A copy of `t` with every speaker label (segments, words, turns, speakers) mapped through `relabel`."""
    def to(label: str | None) -> str | None:
        return None if label is None else relabel.get(label, label)

    segments = [seg.model_copy(update={
        "speaker": to(seg.speaker),
        "words": None if seg.words is None else [w.model_copy(update={"speaker": to(w.speaker)}) for w in seg.words],
    }) for seg in t.segments]
    turns = None if t.turns is None else [turn.model_copy(update={"speaker": to(turn.speaker)}) for turn in t.turns]
    update: dict[str, object] = {"segments": segments, "turns": turns}
    speakers = getattr(t, "speakers", None)
    if speakers is not None:
        update["speakers"] = [sp.model_copy(update={"id": to(sp.id)}) for sp in speakers]
    return t.model_copy(update=update)


def name_chunk_speakers(t: ChunkTranscript, references: Sequence[Reference],
                        settings: Settings | None = None) -> ChunkTranscript:
    """A diarized transcript (one request's) with its speakers named where a reference matches."""
    if not references or t.diarizer != DIARIZER or not t.speakers:
        return t
    s = settings or get_settings()
    matched = match_names({sp.id: sp.embedding for sp in t.speakers}, references, s.speaker_name_threshold)
    return relabel_transcript(t, {k: name for k, (name, _) in matched.items()})


def session_references(bucket: str, session_id: str, speakers: Sequence[SpeakerReference], *,
                       settings: Settings | None = None) -> tuple[list[Reference], list[str]]:
    """A manifest's known speakers, each clip read once and embedded: (the usable ones, a problem per
    other one). Never raises for a bad clip (it is named, and the session goes on without its name);
    a retryable S3 error is raised, so the combine is tried again."""
    from transcription import storage

    s = settings or get_settings()
    references: list[Reference] = []
    problems: list[str] = []
    for i, sp in enumerate(speakers):
        where = f"speakers[{i}] ({sp.name}, {sp.reference_key})"
        try:
            check_reference_key(session_id, sp.reference_key, where)
            data = storage.get_bytes(bucket, sp.reference_key, max_bytes=MAX_REFERENCE_BYTES, settings=s)
            references.append(reference_from_bytes(sp.name, data, where, max_s=MAX_MANIFEST_REFERENCE_S, settings=s))
        except RetryableError:
            raise
        except SpeakerReferenceError as e:
            problems.append(e.reason)
        except NotFoundError:
            problems.append(f"{where}: no such object")
        except TranscriptionError as e:
            problems.append(f"{where}: {e.reason}")
        except Exception as e:  # e.g. no torch on this host: the session is combined without names
            log.exception("speaker_reference_failed session=%s %s", session_id, where)
            problems.append(f"{where}: could not be embedded ({type(e).__name__})")
    if problems:
        log.warning("speaker_reference_problems session=%s problems=%s", session_id, problems)
    return references, problems
