"""Child processes of the stack: each in its own process group, its output in a log file.

Readiness is a predicate polled until true; a process that dies while being waited for fails at
once with the end of its log, so a broken part is reported, never waited on in silence.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the stack's process dies without stopping it (e.g. SIGKILL)."""
    with contextlib.suppress(Exception):  # not Linux: Ctrl-C and SIGTERM still stop everything
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class StackError(RuntimeError):
    """A part of the stack could not start or did not do its job; the message says which and why."""


class Proc:
    """A subprocess in a new session (its own process group), stdout and stderr into `log_path`."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the process group (a warm shutdown), SIGKILL what is left after `timeout`."""
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
        self._signal(signal.SIGKILL)  # pool children or helpers left in the group
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def died(self) -> StackError:
        return StackError(f"{self.name} exited with code {self.proc.returncode}; the end of {self.log_path}:\n"
                          f"{self.tail()}")


Check = Callable[[], object]


def wait_ready(pending: dict[str, tuple[Proc | None, Check, str]], timeout: float,
               say: Callable[[str], None], every_s: float = 5.0, interval: float = 0.25) -> dict[str, float]:
    """Poll each part's readiness check until all are ready; {name: seconds it took}.

    `pending` maps a name to (its process or None, a check returning truthy when ready, what it is
    doing meanwhile). Progress is reported every `every_s`; a part whose process exits, or that is
    not ready within `timeout`, raises `StackError` with its log's tail.
    """
    started = time.monotonic()
    last_say = started
    ready: dict[str, float] = {}
    errors: dict[str, str] = {}
    while len(ready) < len(pending):
        for name, (proc, check, _doing) in pending.items():
            if name in ready:
                continue
            if proc is not None and not proc.alive():
                raise proc.died()
            try:
                ok = check()
            except Exception as e:  # not up yet
                errors[name] = f"{type(e).__name__}: {e}"
                ok = False
            if ok:
                ready[name] = time.monotonic() - (proc.started if proc else started)
                say(f"  [ok] {name:<10} ready in {ready[name]:.1f} s")
        now = time.monotonic()
        waiting = [n for n in pending if n not in ready]
        if not waiting:
            break
        if now - started > timeout:
            name = waiting[0]
            proc = pending[name][0]
            detail = f"; last error: {errors[name]}" if name in errors else ""
            log = f"\nthe end of {proc.log_path}:\n{proc.tail()}" if proc else ""
            raise StackError(f"{name} was not ready after {timeout:.0f} s{detail}{log}")
        if now - last_say >= every_s:
            last_say = now
            say("  ... waiting for " + ", ".join(f"{n} ({pending[n][2]})" for n in waiting)
                + f" [{now - started:.0f} s]")
        time.sleep(interval)
    return ready
