"""MkDocs hooks: the pages that describe the code are generated from it, so they cannot drift.

`<!-- settings-reference -->` in a page becomes one table per section of `transcription/settings.py`
(name, default, type, description), read from `Settings.model_fields`; `<!-- cli-reference -->`
becomes the `--help` of every `stt-router` command, read from the click tree. mkdocs.yml loads this
file (`hooks:`); the tests call the same renderers.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `mkdocs build` from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

SECTION = re.compile(r"^\s*# --- (.+?) -+\s*$")
FIELD = re.compile(r"^\s{4}([a-z_][a-z0-9_]*)\s*:")


def setting_sections() -> dict[str, str]:
    """Field name -> the `# --- section ---` comment above it in settings.py."""
    from transcription import settings

    section, out = "Other", {}
    for line in inspect.getsource(settings.Settings).splitlines():
        if m := SECTION.match(line):
            section = m.group(1).strip()
            section = section[0].upper() + section[1:]
        elif m := FIELD.match(line):
            out[m.group(1)] = section
    return out


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"JSON list of {_type_name(args[0])}"
    name = getattr(annotation, "__name__", str(annotation))
    return {"SecretStr": "secret", "Path": "path", "str": "string"}.get(name, name)


def _constraints(metadata: list[Any]) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    return ", ".join(f"{sign} {getattr(m, attr)}" for m in metadata for attr, sign in signs.items()
                     if getattr(m, attr, None) is not None)


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        return f"`~{text[len(home):]}`" if text.startswith(home) else f"`{text}`"
    if isinstance(value, list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_reference() -> str:
    """Markdown: one table per section of the settings model, in declaration order."""
    from transcription.settings import Settings

    sections = setting_sections()
    tables: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        kind = _type_name(field.annotation)
        if limits := _constraints(field.metadata):
            kind += f" ({limits})"
        row = (f"| `{name.upper()}` | {_default(field.get_default(call_default_factory=True))} | {kind} "
               f"| {_cell(field.description or '')} |")
        tables.setdefault(sections.get(name, "Other"), []).append(row)
    out = []
    for section, rows in tables.items():
        out += [f"## {section}", "", "| name | default | type | what |", "|---|---|---|---|", *rows, ""]
    return "\n".join(out)


def _commands(group: Any, ctx: Any, path: list[str]) -> typing.Iterator[tuple[list[str], Any, Any]]:
    import click

    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx, max_content_width=100, terminal_width=100)
        yield [*path, name], command, sub
        if isinstance(command, click.Group):
            yield from _commands(command, sub, [*path, name])


def cli_reference() -> str:
    """Markdown: a section per `stt-router` command and subcommand with its `--help`."""
    import click

    from transcription.cli import main

    root = click.Context(main, info_name="stt-router", max_content_width=100, terminal_width=100,
                         **main.context_settings)
    out = []
    for path, command, ctx in _commands(main, root, ["stt-router"]):
        level = "#" * min(len(path) + 1, 4)
        out += [f"{level} {' '.join(path)}", "", "```text", command.get_help(ctx), "```", ""]
    return "\n".join(out)


MARKERS = {"<!-- settings-reference -->": settings_reference, "<!-- cli-reference -->": cli_reference}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
