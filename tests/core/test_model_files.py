"""Model assembly: the bundled Whisper base is assembled once and verified by its sha256."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from transcription.errors import ModelError
from transcription.model_files import (
    BUNDLED,
    _package_data_dir,
    assemble,
    bundled_model_dir,
    resolve_model,
    sha256_file,
)


def _parts() -> tuple[Path, Path, Path]:
    first, second = (_package_data_dir(p) for p in BUNDLED["base"].packages)
    return first / "model.bin.part1", second / "model.bin.part2", second


def test_assembled_model_matches_the_published_hash(tmp_path: Path) -> None:
    target = bundled_model_dir("base", tmp_path)
    assert sha256_file(target / "model.bin") == BUNDLED["base"].sha256
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (target / name).is_file()
    # a second call reuses the assembled file
    mtime = (target / "model.bin").stat().st_mtime_ns
    assert bundled_model_dir("base", tmp_path) == target
    assert (target / "model.bin").stat().st_mtime_ns == mtime


def test_a_corrupted_part_is_refused(tmp_path: Path) -> None:
    part1, part2, side = _parts()
    bad = tmp_path / "model.bin.part1"
    shutil.copyfile(part1, bad)
    with bad.open("r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "out"
    with pytest.raises(ModelError, match="corrupted"):
        assemble([bad, part2], side, target, BUNDLED["base"].sha256)
    assert not (target / "model.bin").exists()  # nothing half-written is left to load


def test_a_corrupted_cache_is_refused_at_load(tmp_path: Path) -> None:
    target = bundled_model_dir("base", tmp_path)
    with (target / "model.bin").open("r+b") as f:
        f.seek(10)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="sha256"):
        bundled_model_dir("base", tmp_path)


def test_resolve_passes_directories_and_hub_names(tmp_path: Path) -> None:
    target = bundled_model_dir("base", tmp_path)
    assert resolve_model(str(target), tmp_path) == str(target)
    assert resolve_model("large-v3", tmp_path) == "large-v3"
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no model\.bin"):
        resolve_model(str(tmp_path / "empty"), tmp_path)
