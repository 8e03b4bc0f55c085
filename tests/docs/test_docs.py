"""The docs say nothing the code does not do: every setting, command, option, make target and test
they name exists, the generated references cover everything, and the README stays short with links
that resolve. (`mkdocs build --strict` in `make test` checks the site's own links, anchors and nav.)
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import click
from markdown.extensions.toc import slugify

from transcription.cli import main
from transcription.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
README = ROOT / "README.md"
SOURCES = [README, *PAGES]

# Upper-case names the docs may use that are not settings: boto3's and botocore's environment, the
# Makefile's variables, CloudFormation's words, placeholders. ($NAME, a shell variable, is never checked.)
NOT_SETTINGS = {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_EVENTS",
                "AWS_EC2_METADATA_SERVICE_ENDPOINT", "PYTHONPATH", "DEMO_ARGS", "CHAOS_ARGS", "EXTRAS",
                "CAPABILITY_IAM", "SESSION_ID", "PYDANTIC_DISABLE_PLUGINS"}


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code(text: str) -> Iterator[str]:
    """Every inline code span and every line of a fenced code block, without shell comments."""
    fenced = re.compile(r"^```.*?$(.*?)^```", re.S | re.M)
    for block in fenced.findall(text):
        yield from (re.sub(r"(^|\s)#.*$", "", line) for line in block.splitlines())
    yield from re.findall(r"`([^`\n]+)`", fenced.sub("", text))


def _named(pattern: str) -> Iterator[tuple[Path, str]]:
    for path in SOURCES:
        for code in _code(path.read_text()):
            for m in re.finditer(pattern, code):
                yield path, m.group(0)


def test_every_setting_is_in_the_configuration_reference() -> None:
    reference = _hooks().settings_reference()
    for name, field in Settings.model_fields.items():
        assert f"| `{name.upper()}` |" in reference, name
        assert " ".join(field.description.split()).replace("|", "\\|") in reference, name


def test_every_command_is_in_the_cli_reference() -> None:
    reference = _hooks().cli_reference()
    ctx = click.Context(main, info_name="stt-router")
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert f"# stt-router {name}\n" in reference, name
        for sub in getattr(command, "commands", {}):
            assert f"# stt-router {name} {sub}\n" in reference, (name, sub)


def test_the_docs_name_only_settings_that_exist() -> None:
    settings = {n.upper() for n in Settings.model_fields}
    upper_names = r"(?<![$\w])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"
    unknown = {(p.relative_to(ROOT).as_posix(), name) for p, name in _named(upper_names)
               if name not in settings and name not in NOT_SETTINGS}
    assert not unknown, f"names that are neither settings nor known environment variables: {sorted(unknown)}"


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The command `stt-router WORDS...` names, and the words after it."""
    command: click.Command = main
    ctx = click.Context(main, info_name="stt-router")
    while words and isinstance(command, click.Group):
        sub = command.get_command(ctx, words[0])
        if sub is None:
            break
        command, ctx, words = sub, click.Context(sub, info_name=words[0], parent=ctx), words[1:]
    return command, words


def _invocations() -> Iterator[tuple[Path, str]]:
    for path, line in _named(r"stt-router(?: [^#;&`]*)?"):
        yield path, line.split(" | ")[0].strip()  # not what a shell pipe feeds


def test_the_docs_name_only_commands_and_options_that_exist() -> None:
    problems, seen = [], 0
    for path, line in _invocations():
        words = line.split()[1:]
        if not words or words[0].isupper() or words[0].startswith("-"):  # `stt-router COMMAND --help`
            continue
        for alternative in re.split(r"\\?\|", words[0]):  # `stt-router worker|serve`
            command, rest = _resolve([alternative, *words[1:]])
            if command is main:
                problems.append(f"{path.name}: no command {alternative!r} in {line!r}")
                continue
            seen += 1
            known = {o for p in command.params for o in p.opts} | {"--help", "-h"}
            for word in rest:
                option = word.strip("[]().,").split("=")[0]
                if option.startswith("--") and option not in known:
                    problems.append(f"{path.name}: {' '.join(command.name.split())} has no {option} ({line!r})")
    assert seen > 20  # the scan finds the docs' commands at all
    assert not problems, "\n".join(problems)


def test_the_docs_name_only_make_targets_that_exist() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    named = {(p.name, m.split()[1]) for p, m in _named(r"\bmake [a-z][\w-]*")}
    assert {"demo", "test"} <= {t for _, t in named}
    assert not {(p, t) for p, t in named if t not in targets}


def test_the_security_page_names_tests_that_exist() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    checked = 0
    for row in (line for line in text.splitlines() if line.startswith("| ") and "tests/" in line):
        current = None
        for m in re.finditer(r"`(tests/[\w/]+\.py)?::(\w+)`", row):
            current = m.group(1) or current
            source = (ROOT / current).read_text()
            assert re.search(rf"^\s*(?:async )?def {m.group(2)}\(", source, re.M), f"{current}::{m.group(2)}"
            checked += 1
        for m in re.finditer(r"`(tests/[\w/]+\.py)`", row):
            assert (ROOT / m.group(1)).exists(), m.group(1)
    assert checked > 20


def _links(path: Path) -> Iterator[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    yield from re.findall(r"\]\(([^)\s]+)\)", text)


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_the_readme_is_short_and_its_links_resolve() -> None:
    lines = README.read_text().splitlines()
    assert 100 <= len(lines) <= 200, len(lines)
    links = [link for link in _links(README) if not link.startswith(("http://", "https://", "#"))]
    assert len(links) >= 10
    for link in links:
        target, _, anchor = link.partition("#")
        assert (ROOT / target).exists(), link
        if anchor:
            assert anchor in _anchors(ROOT / target), link



def test_the_docs_name_only_files_that_exist() -> None:
    """Repository paths in inline code (`app/fetch.py`, `bench/results/`) exist: a moved module fails here."""
    made_later = ("build/", ".venv/", ".cache/", "sessions/", "transcripts/", "failed/", "waiting/")
    missing, checked = set(), 0
    for path in SOURCES:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
        for span in re.findall(r"`([\w.-]+(?:/[\w.-]+)*/(?:[\w.-]+\.(?:py|ya?ml|toml|md|json|sh|txt|png))?)`", text):
            if span.startswith(made_later) or re.fullmatch(r"[\w.-]+/", span):  # `chunks/`: a folder in general
                continue
            checked += 1
            if not (ROOT / span).exists():
                missing.add((path.relative_to(ROOT).as_posix(), span))
    assert checked > 30
    assert not missing, sorted(missing)
