"""`stt-router build-lambda`: the router's deployment zip, with the router's dependencies only.

    pip install --target <tmp> --platform manylinux2014_<arch> --python-version 3.11 --only-binary=:all:
        <the project's core dependencies + its `router` extra, read from pyproject.toml>
    + router_lambda/, tasks/, transcription/ (sources)
    + bytecode of every module, hash-based and unchecked (PEP 552), compiled by this interpreter
    -> build/router-lambda.zip (sorted entries, fixed timestamps)

Wheels are chosen for the Lambda platform, not this machine's: manylinux2014 is what the python3.11
runtime (Amazon Linux 2, glibc 2.26) loads. Versions are pinned to the ones installed where the
build runs (the ones the tests ran with), so what ships is what was tested. boto3 and botocore are
bundled although the runtime has them: its copy is older than the project's floor and changes
without notice, so leaving it out is not safe. No pycurl (producers publish through boto3), no
numpy, torch, FastAPI or engine: the build fails if one slips in.

The bytecode matters more than anything in the import graph: Lambda's /var/task is read-only, so
Python cannot cache what it compiles, and a package without bytecode compiles every module it
imports on every cold start (the handler's graph: about 1.5 s of CPU here, against 0.2-0.3 s with
bytecode). Unchecked hash-based .pyc files are used as they are, whatever the files' times after
unzipping. They are compiled only when this interpreter is the runtime's version (the .pyc format
changes between minor versions); otherwise the build says so and ships sources only.
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("router_lambda", "tasks", "transcription")
FORBIDDEN = ("numpy", "torch", "fastapi", "starlette", "uvicorn", "av", "whisperx", "faster_whisper",
             "ctranslate2", "pycurl", "onnxruntime")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class BuildError(RuntimeError):
    pass


@dataclass
class BuildReport:
    path: Path
    size_bytes: int
    unpacked_bytes: int
    files: int
    distributions: list[str]
    bytecode: bool = False  # .pyc files for the runtime's Python in the zip


def requirements(pyproject: Path = ROOT / "pyproject.toml", extra: str = "router") -> list[str]:
    """The core dependencies plus an extra's, with the project's own extras expanded."""
    project = tomllib.loads(pyproject.read_text())["project"]
    name = project["name"]
    extras = project.get("optional-dependencies", {})
    out: list[str] = []

    def add(reqs: list[str]) -> None:
        for req in reqs:
            m = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.strip())
            if m:
                for e in m[1].split(","):
                    add(extras[e.strip()])
            elif req not in out:
                out.append(req)

    add(project.get("dependencies", []))
    add(extras[extra])
    return out


def installed_pins() -> list[str]:
    """`name==version` of every distribution installed here (local builds such as `+cpu` left free)."""
    pins = set()
    for dist in distributions():
        name, version = dist.metadata["Name"], dist.version
        if name and version and "+" not in version and name.lower() != "stt-router":
            pins.add(f"{name}=={version}")
    return sorted(pins)


def build(output: Path, *, python_version: str = "3.11", arch: str = "x86_64",
          progress: Callable[[str], None] = lambda _m: None) -> BuildReport:
    reqs = requirements()
    with tempfile.TemporaryDirectory(prefix="router-lambda-") as tmp:
        target = Path(tmp) / "pkg"
        progress(f"installing {len(reqs)} requirements for python{python_version} on manylinux2014_{arch} ...")
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(installed_pins()) + "\n")
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--target", str(target), "--platform", f"manylinux2014_{arch}", "--implementation", "cp",
               "--python-version", python_version, "--only-binary=:all:", "--constraint", str(constraints), *reqs]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"pip install failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        shutil.rmtree(target / "bin", ignore_errors=True)
        for pkg in PACKAGES:
            _copy_package(pkg, target / pkg)
        bad = sorted(p.name for p in target.iterdir() if p.name.split(".")[0].split("-")[0].lower() in FORBIDDEN)
        if bad:
            raise BuildError(f"heavy packages in the router's dependencies: {', '.join(bad)}")
        bytecode = compile_bytecode(target, python_version, progress)
        output.parent.mkdir(parents=True, exist_ok=True)
        files, unpacked = _zip(target, output)
        dists = sorted(p.name.removesuffix(".dist-info").replace("-", "==", 1)
                       for p in target.glob("*.dist-info"))
    progress(f"wrote {output}")
    return BuildReport(output, output.stat().st_size, unpacked, files, dists, bytecode)


def compile_bytecode(target: Path, python_version: str, progress: Callable[[str], None] = lambda _m: None) -> bool:
    """Compile every module under `target` to unchecked hash-based bytecode, if this interpreter is the
    runtime's Python version; False (sources only) if it is not."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != python_version:
        progress(f"no bytecode: this interpreter is Python {here}, the runtime {python_version} "
                 "(every cold start will compile the modules it imports)")
        return False
    progress(f"compiling bytecode for Python {here} ...")
    ok = compileall.compile_dir(target, quiet=2, workers=1,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:  # as pip's own compile step: a file that is not Python 3 source (a template, a test) stays as is
        progress("some files did not compile; they are shipped as sources only")
    return True


def _copy_package(name: str, dest: Path) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"package {name} not found")
    src = Path(next(iter(spec.submodule_search_locations)))
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", ".*"))  # compiled later


def _zip(root: Path, output: Path) -> tuple[int, int]:
    tmp = output.with_suffix(".zip.tmp")
    files = unpacked = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(dirnames)
            for fn in sorted(filenames):
                path = Path(dirpath) / fn
                info = zipfile.ZipInfo(path.relative_to(root).as_posix(), ZIP_DATE)
                info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                data = path.read_bytes()
                zf.writestr(info, data)
                files += 1
                unpacked += len(data)
    tmp.replace(output)
    return files, unpacked
