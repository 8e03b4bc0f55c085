"""faster-whisper: CTranslate2 Whisper without torch; the CPU engine and the slim install's."""

from __future__ import annotations

import numpy as np

from transcription.engines.base import EngineResult, is_out_of_memory
from transcription.errors import EngineOutOfMemory, OptionError
from transcription.options import TranscribeOptions
from transcription.settings import Settings
from transcription.transcript import Segment, Word


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(self, model_path: str, settings: Settings) -> None:
        from faster_whisper import WhisperModel

        self.model_name = settings.model
        self.device = settings.resolved_device()
        self.compute_type = settings.resolved_compute_type()
        self.beam_size = settings.beam_size
        self.model = WhisperModel(
            model_path,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=settings.cpu_threads,
            download_root=str(settings.model_cache_dir / "hub"),
        )

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineResult:
        if options.align:
            raise OptionError("alignment needs ENGINE=whisperx")
        kwargs: dict[str, object] = {}
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        kwargs.update(vad_arguments(options))
        language, probability = options.language, None
        if language is None and options.languages:
            language, probability = detect_among(self.model, samples, options.languages)
        try:
            segments, info = self.model.transcribe(
                samples,
                language=language,
                task=options.task,
                initial_prompt=options.prompt,
                word_timestamps=options.word_timestamps,
                beam_size=self.beam_size,
                **kwargs,
            )
            out = [_segment(s, options.word_timestamps, info.language) for s in segments]
        except RuntimeError as e:
            if is_out_of_memory(e):
                raise EngineOutOfMemory(f"engine out of memory: {e}") from e
            raise
        return EngineResult(out, info.language, probability if probability is not None else info.language_probability)


    def detect_language(self, samples: np.ndarray, candidates: list[str] | None = None) -> tuple[str, float]:
        return detect_among(self.model, samples, candidates)


def vad_arguments(options: TranscribeOptions) -> dict[str, object]:
    """faster-whisper's `transcribe` arguments for the options' VAD (none: its default, no VAD)."""
    if options.vad is None:
        return {}
    return {"vad_filter": True, "vad_parameters": options.vad.model_dump()}


def detect_among(model, samples: np.ndarray, candidates: list[str] | None) -> tuple[str, float]:
    """The most likely language of the audio's first 30 s, among `candidates` when given (the
    languages a caller says the audio may be in), and its probability: Whisper's detection."""
    _, _, probabilities = model.detect_language(samples)
    allowed = [(code, float(p)) for code, p in probabilities if candidates is None or code in candidates]
    return max(allowed, key=lambda cp: cp[1], default=((candidates or ["en"])[0], 0.0))


def _segment(s, with_words: bool, language: str | None = None) -> Segment:
    words = None
    if with_words:
        words = [
            Word(start=float(w.start), end=float(w.end), word=w.word, probability=float(w.probability))
            for w in (s.words or [])
        ]
    return Segment(
        start=float(s.start),
        end=float(s.end),
        text=s.text.strip(),
        words=words,
        avg_logprob=float(s.avg_logprob),
        no_speech_prob=float(s.no_speech_prob),
        language=language,
    )
