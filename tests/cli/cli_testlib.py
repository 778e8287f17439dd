"""Run the real `vdeploy` entry point (`python -m vdeploy`) in a subprocess with a private VDEPLOY_HOME, wide
enough that Rich never folds a line the assertions look for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def vdeploy(*args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "VDEPLOY_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "vdeploy", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, input=input)


class PtySession:
    """`python -m vdeploy ARGS` on a pseudo-terminal, as a person at a terminal runs it: isatty() is true, input is
    echoed, and the output is read back as it streams. A thread keeps reading, so a chatty child never blocks on a
    full terminal buffer between two expect() calls."""

    def __init__(self, *args: str, env: dict[str, str]):
        import threading

        master, slave = os.openpty()
        self.master = master
        self.proc = subprocess.Popen([sys.executable, "-m", "vdeploy", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env={**os.environ, "TERM": "xterm", **env}, close_fds=True)
        os.close(slave)
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            self._chunks.append(chunk.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    def expect(self, text: str, timeout: float = 60, after: int = 0) -> str:
        """Wait until `text` appears in the output from offset `after` on."""
        import time

        deadline = time.monotonic() + timeout
        while text not in self.output[after:]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen in {timeout} s; output so far:\n{self.output}")
            if not self._reader.is_alive() and text not in self.output[after:]:
                raise AssertionError(f"{text!r} not seen before exit; output:\n{self.output}")
            time.sleep(0.05)
        return self.output

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        os.close(self.master)
        return code
