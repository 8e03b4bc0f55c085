"""docker-compose.yml and the Dockerfiles, checked without a Docker engine (there is none here):
the compose file against the Compose specification's JSON schema, every service's command against
the real CLI, every setting it passes against the settings object, and the Dockerfiles' basics
(pinned bases, COPY sources that exist, every package the project installs)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support.services import ROOT, VENV_BIN
from transcription.settings import Settings

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILES = {"gpu": ROOT / "docker" / "gpu.Dockerfile", "router": ROOT / "docker" / "router.Dockerfile"}
OUR_IMAGES = {"stt-router:local", "stt-router-router:local"}
# variables read by libraries rather than by the settings object
EXTERNAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_the_compose_file_validates_against_the_compose_spec(tmp_path) -> None:
    out = check_jsonschema(COMPOSE)
    assert out.returncode == 0, out.stdout + out.stderr
    # the validator is live: a misspelt key fails
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    command: [\"worker\"]", "    commandd: [\"worker\"]", 1))
    assert check_jsonschema(broken).returncode != 0


def test_the_services_the_issue_asks_for(compose) -> None:
    services = compose["services"]
    assert {"redis", "moto", "api", "worker", "worker-gpu", "beat", "flower", "router"} <= set(services)
    assert re.fullmatch(r"motoserver/moto:\d+\.\d+\.\d+", services["moto"]["image"])
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert services["worker-gpu"]["environment"]["DEVICE"].endswith("auto}")  # falls back to the CPU
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert services["api"]["environment"]["API_KEY"].startswith("${API_KEY:?")  # no default key, ever
    assert services["worker"]["environment"]["CELERY_BROKER_URL"] == "sqs://"
    for name, svc in services.items():  # only on this machine's loopback
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def _cli_words(svc: dict) -> list[str] | None:
    """The `stt-router` arguments a service runs, or None for a service that is not ours."""
    if svc.get("image") not in OUR_IMAGES:
        return None
    entry = svc.get("entrypoint")
    if entry is not None and entry != ["stt-router"]:
        raise AssertionError(f"unexpected entrypoint {entry}")
    if svc["build"]["dockerfile"].endswith("router.Dockerfile"):
        assert entry == ["stt-router"], "the router image's default command is the Lambda handler"
    return list(svc["command"])


def test_every_service_command_exists_in_the_cli(compose) -> None:
    """`stt-router <command with its options> --help`: click rejects an unknown command or option."""
    checked = []
    for name, svc in compose["services"].items():
        words = _cli_words(svc)
        if words is None:
            continue
        out = subprocess.run([str(VENV_BIN / "stt-router"), *words, "--help"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0 and "Usage:" in out.stdout, (name, words, out.stderr[-2000:])
        checked.append(name)
    assert {"init", "api", "worker", "worker-gpu", "beat", "flower", "router"} <= set(checked)
    bad = subprocess.run([str(VENV_BIN / "stt-router"), "serve", "--no-such-option", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0  # the check would catch a wrong option


def test_every_setting_passed_is_a_setting(compose) -> None:
    fields = {f.upper() for f in Settings.model_fields}
    for name, svc in compose["services"].items():
        if svc.get("image") not in OUR_IMAGES:
            continue
        for var in svc["environment"]:
            assert var in fields or var in EXTERNAL_ENV or var.startswith("AWS_ENDPOINT_URL"), (name, var)


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)
            if not m.group(0).lstrip().startswith("#")]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_basics(name: str, compose) -> None:
    path = DOCKERFILES[name]
    ins = _instructions(path)
    args = dict(re.match(r"(\w+)=?(.*)", v).groups() for k, v in ins if k == "ARG" and "=" in v)
    froms = [v for k, v in ins if k == "FROM"]
    assert froms, path
    for f in froms:  # a pinned base image: a tag that is not `latest`
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f.split()[0])
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), image
    copied = set()
    for k, v in ins:
        if k != "COPY" or v.startswith("--from"):
            continue
        *sources, _dest = v.split()
        for src in sources:
            assert (ROOT / src).exists(), f"{path.name}: COPY {src} does not exist"
            copied.add(src.rstrip("/"))
    # every package and module the project installs is in the image (pip install . needs them all)
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    needed = {p.split(".")[0] for p in tool["packages"]} | {f"{m}.py" for m in tool.get("py-modules", [])}
    assert needed <= copied, f"{path.name} misses {needed - copied}"
    assert {"pyproject.toml", "README.md"} <= copied
    # and nothing the image needs is excluded by .dockerignore
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not (copied & ignored)
    # the images compose builds are these files
    built = {svc["build"]["dockerfile"] for svc in compose["services"].values() if "build" in svc}
    assert f"docker/{path.name}" in built


def test_the_gpu_image_runs_as_a_user_and_the_router_image_runs_the_handler() -> None:
    gpu = dict(_instructions(DOCKERFILES["gpu"]))
    assert gpu["USER"] != "root" and gpu["ENTRYPOINT"] == '["stt-router"]'
    router = _instructions(DOCKERFILES["router"])
    cmd = [v for k, v in router if k == "CMD"][-1]
    handler = cmd.strip('[]"')
    module, attr = handler.rsplit(".", 1)
    import importlib

    assert callable(getattr(importlib.import_module(module), attr))
    pip = next(v for k, v in router if k == "RUN" and "pip install" in v)
    assert "[router]" in pip and "gpu" not in pip  # the Lambda stays free of torch and the engine
