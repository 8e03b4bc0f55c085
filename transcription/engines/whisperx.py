"""WhisperX: batched inference over pyannote VAD segments; the production GPU engine.

Word timestamps come from Whisper's cross-attention (the same CTranslate2 model, unbatched) unless
alignment is asked for: wav2vec2 alignment needs a model from a hub, so it is off by default and
fails with a `ModelError` naming the model when it cannot be loaded. Speakers are not the engine's
business: the chunk function diarizes for every engine (`transcription/speakers/`).
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from transcription.engines.base import EngineResult, is_out_of_memory
from transcription.engines.faster_whisper import _segment, detect_among, vad_arguments
from transcription.errors import EngineOutOfMemory, ModelError, OptionError
from transcription.options import TranscribeOptions
from transcription.settings import Settings
from transcription.transcript import Segment, Word


class WhisperXEngine:
    name = "whisperx"

    def __init__(self, model_path: str, settings: Settings) -> None:
        import whisperx

        self.model_name = settings.model
        self.device = settings.resolved_device()
        self.compute_type = settings.resolved_compute_type()
        self.batch_size = settings.batch_size
        self.settings = settings
        self.pipeline = whisperx.load_model(
            model_path,
            self.device,
            compute_type=self.compute_type,
            vad_method="pyannote",  # its weights ship inside the whisperx package
            threads=settings.cpu_threads or 4,
            download_root=str(settings.model_cache_dir / "hub"),
        )
        self._lock = threading.Lock()  # the pipeline keeps per-call state (tokenizer, options)
        self._align: dict[str, tuple[object, dict]] = {}

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineResult:
        with self._lock:
            try:
                return self._transcribe(samples, options)
            except RuntimeError as e:
                if is_out_of_memory(e):
                    raise EngineOutOfMemory(f"engine out of memory: {e}") from e
                raise

    def detect_language(self, samples: np.ndarray, candidates: list[str] | None = None) -> tuple[str, float]:
        with self._lock:
            return detect_among(self.pipeline.model, samples, candidates)

    def _transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineResult:
        language = options.language
        if language is None and options.languages:
            language = detect_among(self.pipeline.model, samples, options.languages)[0]
        if language is None:
            # whisperx caches the first detected language on the pipeline; detect per call instead
            language = self.pipeline.detect_language(samples)
        if options.vad is not None and options.align:
            raise OptionError("voice activity detection options (chunking_strategy server_vad) and alignment "
                              "cannot be combined with ENGINE=whisperx")
        if (options.word_timestamps and not options.align) or options.vad is not None:
            # unbatched, on the same model: word times from cross-attention, the asked VAD (Silero)
            return self._transcribe_unbatched(samples, options, language)
        base = self.pipeline.options
        update: dict[str, object] = {"initial_prompt": options.prompt}
        if options.temperature is not None:
            update["temperatures"] = [options.temperature]
        self.pipeline.options = dataclasses.replace(base, **update)
        try:
            result = self.pipeline.transcribe(
                samples, batch_size=self.batch_size, language=language, task=options.task
            )
        finally:
            self.pipeline.options = base
        segments = result["segments"]
        if options.align:
            segments = self._aligned(segments, samples, language)
        return EngineResult([_from_dict(s, options.word_timestamps or options.align, language) for s in segments],
                            language)

    def _transcribe_unbatched(
        self, samples: np.ndarray, options: TranscribeOptions, language: str
    ) -> EngineResult:
        kwargs: dict[str, object] = {}
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        kwargs.update(vad_arguments(options))
        segments, info = self.pipeline.model.transcribe(
            samples,
            language=language,
            task=options.task,
            initial_prompt=options.prompt,
            word_timestamps=options.word_timestamps,
            beam_size=self.settings.beam_size,
            **kwargs,
        )
        out = [_segment(s, options.word_timestamps, info.language) for s in segments]
        return EngineResult(out, info.language, info.language_probability)

    def _aligned(self, segments: list[dict], samples: np.ndarray, language: str) -> list[dict]:
        import whisperx

        name = self.settings.align_model
        if language not in self._align:
            try:
                self._align[language] = whisperx.load_align_model(
                    language, self.device, model_name=name, model_cache_only=name is not None
                )
            except Exception as e:
                wanted = name or f"the default wav2vec2 alignment model for {language!r}"
                raise ModelError(
                    f"alignment model {wanted} could not be loaded ({type(e).__name__}: {e}); "
                    "set ALIGN_MODEL to a local wav2vec2 model directory"
                ) from e
        model, meta = self._align[language]
        return whisperx.align(segments, model, meta, samples, self.device)["segments"]


def _from_dict(s: dict, with_words: bool, language: str | None = None) -> Segment:
    words = None
    if with_words and s.get("words") is not None:
        words = [
            Word(
                start=float(w.get("start", s["start"])),
                end=float(w.get("end", s["end"])),
                word=str(w["word"]),
                probability=float(w["probability"]) if w.get("probability") is not None
                else (float(w["score"]) if w.get("score") is not None else None),
                speaker=w.get("speaker"),
            )
            for w in s["words"]
        ]
    return Segment(
        start=float(s["start"]),
        end=float(s["end"]),
        text=str(s["text"]).strip(),
        words=words,
        speaker=s.get("speaker"),
        avg_logprob=s.get("avg_logprob"),
        language=s.get("language") or language,
    )
