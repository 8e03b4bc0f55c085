"""`stt-router transcribe`: real processes, several files, progress, formats, a bad file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.speech import speak, word_error_rate

CLI = [sys.executable, "-m", "transcription.cli"]


@pytest.mark.model  # the command loads the model in its own process
def test_transcribes_several_files_with_progress(tmp_path: Path, sentences) -> None:
    a = shutil.copyfile(speak(sentences[0], "mp3"), tmp_path / "a.mp3")
    b = shutil.copyfile(speak(sentences[1], "ogg"), tmp_path / "b.ogg")
    out = tmp_path / "out"
    proc = subprocess.run([*CLI, "transcribe", str(a), str(b), "--format", "srt", "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=300, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    assert "[1/2] a.mp3" in proc.stderr and "[2/2] b.ogg" in proc.stderr and "real time" in proc.stderr
    srt_a = (out / "a.srt").read_text()
    assert srt_a.startswith("1\n00:00:00")
    text_a = " ".join(line for line in srt_a.splitlines() if line and "-->" not in line and not line.isdigit())
    assert word_error_rate(sentences[0], text_a) < 0.25
    assert (out / "b.srt").exists()


@pytest.mark.model
def test_prints_to_stdout_and_fails_on_bad_input(tmp_path: Path, sentences) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    proc = subprocess.run([*CLI, "transcribe", str(speak(sentences[2])), str(bad), "--format", "txt"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert word_error_rate(sentences[2], proc.stdout) < 0.25
    assert "notes.wav: failed: not a supported audio file" in proc.stderr
    assert "1 of 2 files failed" in proc.stderr


def test_bad_language_is_a_usage_error(tmp_path: Path, sentences) -> None:
    proc = subprocess.run([*CLI, "transcribe", str(speak(sentences[2])), "--language", "english!"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "ISO 639-1" in proc.stderr



def test_help_imports_no_part_of_the_system() -> None:
    """`stt-router --help` imports every command module; none may pull in what its command starts."""
    code = ("import sys; from click.testing import CliRunner; from transcription.cli import main; "
            "out = CliRunner().invoke(main, ['--help']).output; "
            "heavy = {'celery', 'fastapi', 'numpy', 'boto3', 'redis', 'transcription.settings', 'app.main', "
            "'gpu_worker.worker', 'beat_schedule', 'router_lambda.handler'}; "
            "print(sorted(heavy & set(sys.modules))); print(out)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    imported, listing = proc.stdout.split("\n", 1)
    assert imported == "[]"
    for name in ("serve", "worker", "beat", "drain", "dlq", "sessions", "flower", "transcribe"):
        assert f"  {name} " in listing
