"""Runs Parley's processes as children of one command, with their output interleaved and prefixed.

Children get their own session (a terminal's Ctrl-C reaches only the supervisor, which then stops them in order)
and die with the supervisor even if it is killed outright (PR_SET_PDEATHSIG).
"""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

_PR_SET_PDEATHSIG = 1
_COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m"]
_RESET = "\033[0m"


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


class ProcessGroup:
    def __init__(self, *, output=None, env: dict[str, str] | None = None) -> None:
        self.children: list[Child] = []
        self.output = output or sys.stdout
        self.env = env
        self._print_lock = threading.Lock()
        self._colour = self.output.isatty() if hasattr(self.output, "isatty") else False
        self._width = 6

    def log(self, name: str, line: str) -> None:
        prefix = f"{name:<{self._width}} | "
        if self._colour:
            index = [child.name for child in self.children].index(name) if name in self._names() else -1
            prefix = f"{_COLOURS[index % len(_COLOURS)] if index >= 0 else ''}{prefix}{_RESET}"
        with self._print_lock:
            self.output.write(prefix + line.rstrip("\n") + "\n")
            self.output.flush()

    def _names(self) -> list[str]:
        return [child.name for child in self.children]

    def start(self, name: str, command: list[str]) -> Child:
        child = Child(name=name, command=command)
        self.children.append(child)
        self._width = max(self._width, len(name))
        child.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            text=True,
            bufsize=1,
            errors="replace",
        )
        child.reader = threading.Thread(target=self._relay, args=(child,), daemon=True)
        child.reader.start()
        return child

    def _relay(self, child: Child) -> None:
        assert child.process is not None and child.process.stdout is not None
        for line in child.process.stdout:
            self.log(child.name, line)

    def first_exited(self) -> Child | None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                return child
        return None

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """SIGTERM every child, wait up to `timeout_s` in all, then SIGKILL what is left."""
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(child.name, "did not stop in time: killed")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=1)
