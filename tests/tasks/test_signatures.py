"""Task plumbing stays readable (issue 18): no function in tasks/ takes more than 5 positional
parameters (`self`/`cls` not counted). Past that, a call like `_fail(bucket, chunk, "worker_lost",
reason, starts, task_id, s, celery, force)` is read by counting commas: group them in an object
(`tasks.delivery`) or make them keyword-only."""

from __future__ import annotations

import ast
from pathlib import Path

MAX_POSITIONAL = 5
TASKS = Path(__file__).resolve().parents[2] / "tasks"


def positional(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_no_function_in_tasks_takes_more_than_five_positional_parameters() -> None:
    files = sorted(TASKS.rglob("*.py"))
    functions = [(path, node) for path in files for node in ast.walk(ast.parse(path.read_text(), str(path)))
                 if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert len(files) > 5 and len(functions) > 50  # the walk really saw the package
    too_many = [f"{path.relative_to(TASKS.parent)}:{fn.lineno} {fn.name}({', '.join(positional(fn))})"
                for path, fn in functions if len(positional(fn)) > MAX_POSITIONAL]
    assert too_many == []


def test_the_check_counts_what_it_should() -> None:
    """Keyword-only parameters and `self` are free; a sixth positional one is caught."""
    tree = ast.parse("class C:\n def m(self, a, b, c, d, e, *, f, g): ...\n"
                     "def six(a, b, c, d, e, g): ...\ndef ok(a, /, b, c, d, e, *args, h=1): ...")
    counts = {n.name: len(positional(n)) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert counts == {"m": 5, "six": 6, "ok": 5}
