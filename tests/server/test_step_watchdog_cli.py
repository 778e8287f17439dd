"""The step watchdog through the real entry point (issue 16): a SIGSTOP'd tensor-parallel rank is named and every
process exits within the watchdog time plus a few seconds, exit code 1; the error is never glued to the streamed
text. While idle, a stopped rank fails the engine (serve's /health turns 503) after the shorter idle timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from server_harness import read_serve_url

STEP_TIMEOUT_S = 3


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _rank_pids(root: int, want: int, timeout: float = 120) -> list[int]:
    """The rank processes below `root` (the engine may run in a process of its own): on CPU they fork from a
    forkserver, so they are the children of the process whose command line is the forkserver's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranks, todo = [], [root]
        while todo:
            pid = todo.pop()
            kids = _children(pid)
            if "multiprocessing.forkserver" in _cmdline(pid):
                ranks += kids
            else:
                todo += kids
        if len(ranks) >= want:
            return sorted(ranks)
        time.sleep(0.2)
    raise AssertionError(f"{want} rank processes never appeared under pid {root}")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _env(tmp_path, **extra: str) -> dict[str, str]:
    return {**os.environ, "VDEPLOY_HOME": str(tmp_path), "VDEPLOY_RUNTIME_DIR": str(tmp_path / "run"),
            "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **extra}


@pytest.mark.timeout(120)
def test_generate_names_a_stopped_rank_and_exits_1(tiny_model_dir, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "vdeploy", "generate", str(tiny_model_dir), "--tp", "2", "--no-chat", "-p", "hello",
         "--max-tokens", "480", "--dtype", "float32", "--device", "cpu", "--step-timeout", str(STEP_TIMEOUT_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path))
    try:
        ranks = _rank_pids(proc.pid, 2)  # found while the model loads, so the stop follows the first token at once
        first = proc.stdout.read(1)  # tokens stream: every rank is in its step loop
        os.kill(ranks[-1], signal.SIGSTOP)
        stopped = time.monotonic()
        rest, err = proc.communicate(timeout=STEP_TIMEOUT_S + 30)
        took = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.decode()
    assert proc.returncode == 1, err
    assert took < STEP_TIMEOUT_S + 8, took
    assert f"no step finished within {STEP_TIMEOUT_S} s" in err and f"(pid {ranks[-1]}) is stopped" in err, err
    assert "Traceback" not in err
    text = (first + rest).decode()
    assert text.endswith("\n") and "error" not in text.lower()  # the partial answer's line is closed
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(p) for p in ranks)


@pytest.mark.timeout(150)
def test_serve_fails_its_engine_when_a_rank_stops_while_idle(tiny_model_dir, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "vdeploy", "serve", str(tiny_model_dir), "--tp", "2", "--port", "0", "--dtype",
         "float32", "--max-model-len", "256", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_env(tmp_path, VDEPLOY_IDLE_TIMEOUT_S="2", VDEPLOY_DEVICE="cpu"))
    try:
        url = read_serve_url(proc)
        assert httpx.get(f"{url}/health").status_code == 200
        ranks = _rank_pids(proc.pid, 2)
        os.kill(ranks[-1], signal.SIGSTOP)
        stopped = time.monotonic()
        while httpx.get(f"{url}/health").status_code == 200:
            assert time.monotonic() - stopped < 2 + 8, "the idle watchdog never fired"
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while not all(_gone(p) for p in ranks) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(p) for p in ranks)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"while idle for 2 s: rank 1 (pid {ranks[-1]}) is stopped" in out, out
    assert "Traceback" not in out, out
