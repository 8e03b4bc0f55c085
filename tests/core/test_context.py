"""Context carry-over: a session chunk is prompted with the end of the earlier chunk's transcript.

The real model on real (espeak-ng) speech and moto's S3. The engine is wrapped only to see the
prompt each call gets (it still transcribes). Silence and noise after speech are the known failure
of prompts (Whisper writes the prompt out again): each test shows the failure happens without the
guard and does not reach the transcript with it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.speech import speak, word_error_rate
from transcription.audio import SAMPLE_RATE, Audio
from transcription.chunk import load_audio, transcribe_audio, transcribe_s3_chunk
from transcription.context import (
    COPY_RUN_WORDS,
    PROMPT_MAX_BYTES,
    Context,
    compression_ratio,
    context_failure,
    copied_run,
    fit_prompt,
    with_context,
)
from transcription.options import TranscribeOptions
from transcription.settings import get_settings

EN = TranscribeOptions(language="en")


class Spy:
    """The real engine, remembering the options of every call."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, []

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def transcribe(self, samples, options):
        self.calls.append(options)
        return self.engine.transcribe(samples, options)


def test_prompt_keeps_the_session_prompt_first_within_the_budget() -> None:
    context = " ".join(f"word{i}" for i in range(400))
    prompt = fit_prompt("Acme, Zyxel", context)
    assert prompt.startswith("Acme, Zyxel ") and prompt.endswith("word399")
    assert len(prompt.encode()) <= PROMPT_MAX_BYTES
    assert prompt.split()[2].startswith("word")  # cut at a word's start, not inside it
    assert fit_prompt(None, "short context") == "short context"
    # a session prompt that fills the budget alone leaves no room: the options are unchanged
    long_own = EN.model_copy(update={"prompt": "x" * PROMPT_MAX_BYTES})
    assert with_context(long_own, Context("some words", 0)) is long_own
    assert with_context(EN, Context("  ", 0)) is EN and with_context(EN, None) is EN
    assert copied_run("And the kitchen, write a list", "the Kitchen writes a list") == 2
    assert compression_ratio("thank you " * 30) > 2.4


def test_s3_chunks_are_prompted_with_the_nearest_earlier_transcript(moto, bucket, fw_engine, sentences,
                                                                     speech_files, env) -> None:
    s3 = moto.client("s3")
    s3.put_object(Bucket=bucket, Key="sessions/ctx/manifest.json",
                  Body=json.dumps({"language": "en", "prompt": "Acme"}).encode())
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"sessions/ctx/chunks/{i}.wav", Body=speech_files[i].read_bytes())
    spy = Spy(fw_engine)

    def run(i: int):
        return transcribe_s3_chunk(bucket, f"sessions/ctx/chunks/{i}.wav", engine=spy).transcript

    first = run(0)
    assert "context_from" not in first.options and spy.calls[-1].prompt == "Acme"  # nothing before it
    third = run(2)  # queued: chunk 1 has no transcript yet, so the nearest earlier one is chunk 0
    assert third.options["context_from"] == 0 and "context_dropped" not in third.options
    assert spy.calls[-1].prompt == f"Acme {first.text}"  # the manifest's prompt first, then the context
    assert third.options["prompt"] == "Acme"  # the stored options name the context's source, not its text
    second = run(1)
    assert second.options["context_from"] == 0
    fourth = run(3)  # the chunk before it exists: one GET
    assert fourth.options["context_from"] == 2 and spy.calls[-1].prompt == f"Acme {third.text}"
    for t, sentence in zip((first, second, third, fourth), sentences, strict=False):
        assert word_error_rate(sentence, t.text) < 0.25  # the context does no harm to clear speech
    assert len(spy.calls) == 4  # no chunk was transcribed twice

    env.setenv("CHUNK_CONTEXT", "false")
    get_settings.cache_clear()
    s3.put_object(Bucket=bucket, Key="sessions/ctx/chunks/4.wav", Body=speech_files[4].read_bytes())
    fifth = transcribe_s3_chunk(bucket, "sessions/ctx/chunks/4.wav", engine=spy).transcript
    assert "context_from" not in fifth.options and spy.calls[-1].prompt == "Acme"


def silence() -> np.ndarray:
    return np.zeros(5 * SAMPLE_RATE, np.float32)


def rumble() -> np.ndarray:
    """Brown noise (a random walk, like wind or traffic on a microphone) at -20 dBFS peak."""
    walk = np.cumsum(np.random.default_rng(1).standard_normal(5 * SAMPLE_RATE))
    walk -= walk.mean()
    return (0.1 * walk / np.abs(walk).max()).astype(np.float32)


@pytest.mark.parametrize(("noise", "copies"), [(silence, True), (rumble, None)], ids=["silence", "noise"])
def test_a_context_is_never_written_out_over_silence_or_noise(fw_engine, sentences, noise, copies) -> None:
    """Over silence Whisper base writes the prompt out; over noise it may or may not (it differs
    between CTranslate2 builds): either way the guarded transcript never holds the context."""
    speech = transcribe_audio(load_audio(speak(" ".join(sentences[:3]))), EN, engine=fw_engine)
    context = Context(speech.text, 0)
    audio = Audio(noise(), "wav")
    prompted = with_context(EN, context)
    # the context guard's trigger, seen without the hallucination guard (which drops words over silence too)
    unguarded = transcribe_audio(audio, prompted, engine=fw_engine,
                                 settings=get_settings().model_copy(update={"hallucination_guard": False}))
    copied = copied_run(unguarded.text, speech.text) >= COPY_RUN_WORDS
    if copies is not None:  # the failure the guard exists for: the prompt comes back as if it had been said
        assert copied == copies, unguarded.text
    spy = Spy(fw_engine)
    guarded = transcribe_audio(audio, EN, engine=spy, context=context)
    assert guarded.options["context_from"] == 0
    if copied:
        assert context_failure(unguarded, context, prompted.prompt) is not None
        # the context guard drops it, or the hallucination guard has already (words over silence)
        assert "copied" in guarded.options.get("context_dropped", "") or any(
            "over silence" in d["reason"] for d in guarded.options.get("hallucination_dropped", [])), guarded.options
        assert [c.prompt is not None for c in spy.calls] == [True, False]  # tried with the context, then without
        assert guarded.text == transcribe_audio(audio, EN, engine=fw_engine).text  # what it gets without one
    assert copied_run(guarded.text, speech.text) < 2 and len(guarded.text.split()) <= 2
