"""`stt-router`: the one command line for every part.

Subcommands live with the part they start (`app`, `gpu_worker`, ...) and are imported only when
invoked, so `stt-router --help` and the router's tools stay fast and need no engine installed. A
command module imports only click at its top and, inside each command, the part that command starts
(the server alone takes seconds to import), so `stt-router <command> --help` is fast too.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import click

from transcription.errors import TranscriptionError

# name -> "module:attribute" of a click command; imported on first use
LAZY_COMMANDS: dict[str, str] = {
    "serve": "app.cli:serve",
    "worker": "gpu_worker.cli:worker",
    "dlq": "tasks.cli:dlq",
    "sessions": "tasks.cli:sessions",
    "router-local": "router_lambda.cli:router_local",
    "build-lambda": "router_lambda.cli:build_lambda",
    "beat": "tasks.cli:beat_command",
    "drain": "tasks.cli:drain_command",
    "flower": "gpu_worker.cli:flower",
    "demo": "devstack.cli:demo",
    "stack": "devstack.cli:stack",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Smart Transcription Router: audio chunks to transcripts, direct or queued."""


FORMAT_CHOICES = {"txt": "text", "text": "text", "json": "json", "verbose_json": "verbose_json",
                  "srt": "srt", "vtt": "vtt", "tsv": "tsv"}
EXTENSIONS = {"text": "txt", "json": "json", "verbose_json": "verbose.json", "srt": "srt", "vtt": "vtt",
              "tsv": "tsv"}


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(sorted(FORMAT_CHOICES)), default="txt", show_default=True)
@click.option("--engine", type=click.Choice(["faster-whisper", "whisperx"]), help="overrides ENGINE")
@click.option("--model", help="overrides MODEL: a bundled name, a model directory, or a hub name")
@click.option("--language", help="ISO 639-1 code; detected when omitted; `en,de` detects among those only")
@click.option("--prompt", help="names and terms to bias the model")
@click.option("--word-timestamps", is_flag=True, help="word-level times (json, verbose_json)")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="write <name>.<format> here instead of printing")
def transcribe(files: tuple[Path, ...], fmt: str, engine: str | None, model: str | None, language: str | None,
               prompt: str | None, word_timestamps: bool, output_dir: Path | None) -> None:
    """Transcribe audio FILES (flac, mp3, mp4, mpeg, mpga, m4a, ogg, oga, opus, wav, webm)."""
    # here, not at the top: `stt-router --help` imports this module (numpy, the engine, the settings)
    from pydantic import ValidationError

    from transcription.chunk import transcribe_audio
    from transcription.engines import load_engine
    from transcription.formats import render
    from transcription.options import TranscribeOptions
    from transcription.settings import get_settings

    fmt = FORMAT_CHOICES[fmt]
    try:
        options = TranscribeOptions(language=language, prompt=prompt, word_timestamps=word_timestamps)
    except ValidationError as e:
        raise click.BadParameter(e.errors()[0]["msg"]) from e
    settings = get_settings().model_copy(
        update={k: v for k, v in {"engine": engine, "model": model}.items() if v is not None}
    )
    click.echo(f"loading {settings.engine} model {settings.model} ...", err=True)
    try:
        eng = load_engine(settings)
    except TranscriptionError as e:
        raise click.ClickException(e.reason) from e
    if output_dir:
        output_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for n, path in enumerate(files, start=1):
        prefix = f"[{n}/{len(files)}] {path.name}"
        click.echo(f"{prefix}: transcribing ...", err=True)
        started = time.perf_counter()
        try:
            t = transcribe_audio(path, options, engine=eng, settings=settings)
        except TranscriptionError as e:
            failed += 1
            click.echo(f"{prefix}: failed: {e.reason}", err=True)
            continue
        wall = time.perf_counter() - started
        click.echo(f"{prefix}: {t.duration:.1f} s of audio in {wall:.1f} s "
                   f"({t.duration / max(wall, 1e-6):.1f}x real time), language {t.language}", err=True)
        text = render(t, fmt)
        if output_dir:
            target = output_dir / f"{path.stem}.{EXTENSIONS[fmt]}"
            target.write_text(text, encoding="utf-8")
            click.echo(f"{prefix}: wrote {target}", err=True)
        else:
            click.echo(text, nl=not text.endswith("\n"))
    if failed:
        click.echo(f"{failed} of {len(files)} files failed", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
