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
