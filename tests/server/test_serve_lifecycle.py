"""How `vdeploy serve` ends, through the real entry point: a second signal cuts the drain short, a dead engine core
stops the server with exit code 1 (a supervisor restarts it) and one log line naming the cause, a core stuck with
requests in flight is named and stopped by the step watchdog (exit code 1), one stuck at shutdown is killed after a
short grace instead of 30 s, and a bad --log-level is a usage error before any loading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

LONG = {"model": "tiny", "prompt": "hello", "max_tokens": 500, "ignore_eos": True}


def _serve(model_dir, tmp_path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vdeploy", "serve", str(model_dir), "--port", "0", "--max-model-len", "512",
         "--served-model-name", "tiny", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "VDEPLOY_HOME": str(tmp_path), "VDEPLOY_RUNTIME_DIR": str(tmp_path / "run"),
             "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1"})


def _url(proc: subprocess.Popen, seen: list[str]) -> str:
    """The base URL once serve prints it; the lines before it are kept in `seen`."""
    for line in proc.stdout:
        seen.append(line)
        if "serving" in line and "/v1" in line:
            return line.split(" at ", 1)[1].split("/v1", 1)[0]
    raise AssertionError("serve never came up:\n" + "".join(seen))


def _core_pid(server_pid: int) -> int:
    out = subprocess.run(["pgrep", "-P", str(server_pid)], capture_output=True, text=True).stdout
    for pid in map(int, out.split()):
        with open(f"/proc/{pid}/cmdline") as f:
            if "core_process" in f.read():
                return pid
    raise AssertionError(f"no engine core process below pid {server_pid}")


def _stream_in_background(url: str, results: dict) -> tuple[threading.Thread, threading.Event]:
    started = threading.Event()

    def run() -> None:
        try:
            with httpx.stream("POST", f"{url}/v1/completions", json={**LONG, "stream": True}, timeout=60) as r:
                body = []
                for chunk in r.iter_text():
                    body.append(chunk)
                    started.set()
                results["stream"] = "".join(body)
        except httpx.HTTPError as e:
            results["stream"] = e
        started.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, started


def test_unknown_log_level_is_a_usage_error_before_loading(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vdeploy", "serve", "--log-level", "verbose"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "VDEPLOY_HOME": str(tmp_path), "COLUMNS": "200"})
    assert proc.returncode == 2, proc.stderr
    assert "verbose" in proc.stderr and "critical, error, warning, info, debug, trace" in proc.stderr
    assert "loading" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.timeout(180)
def test_second_sigterm_cuts_the_drain_short(tiny_model_dir, tmp_path):
    proc = _serve(tiny_model_dir, tmp_path, "--drain-timeout", "120")
    try:
        url = _url(proc, [])
        results: dict = {}
        thread, started = _stream_in_background(url, results)
        assert started.wait(60)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)  # the drain waits for the stream (120 s)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        forced = time.monotonic()
        log, _ = proc.communicate(timeout=30)
        took = time.monotonic() - forced
        thread.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < 10, (took, log)
    assert "second signal cut the drain short" in log.strip().splitlines()[-1], log
    assert "every request finished" not in log


def _kill_quietly(proc: subprocess.Popen, core: int | None) -> None:
    """After a test: serve and its engine core gone (a stopped core left behind would hold the output pipe open)."""
    if proc.poll() is None:
        proc.kill()
    if core is not None:
        try:
            os.kill(core, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _signal_core_mid_stream(proc: subprocess.Popen, sig: signal.Signals) -> tuple[str, int, float, dict]:
    """Send `sig` to serve's engine core while a stream runs, then wait for serve to exit on its own (no signal sent
    to it): its log, the core's pid, the seconds it took, and what the stream got."""
    core = None
    results: dict = {}
    try:
        thread, started = _stream_in_background(_url(proc, []), results)
        assert started.wait(60)
        core = _core_pid(proc.pid)
        os.kill(core, sig)
        sent = time.monotonic()
        log, _ = proc.communicate(timeout=60)
        took = time.monotonic() - sent
        thread.join(30)
    finally:
        _kill_quietly(proc, core)
    return log, core, took, results


@pytest.mark.timeout(180)
def test_killed_engine_core_stops_the_server_with_exit_code_1(tiny_model_dir, tmp_path):
    proc = _serve(tiny_model_dir, tmp_path)
    log, core, _, results = _signal_core_mid_stream(proc, signal.SIGKILL)
    assert proc.returncode == 1, log
    assert "engine_dead" in results["stream"], results  # the in-flight stream got its error event
    errors = [line for line in log.splitlines() if f"pid {core}" in line and "SIGKILL" in line]
    assert errors and "engine failed" in errors[0], log
    last = log.strip().splitlines()[-1]
    assert last.startswith("stopped: the engine stopped serving") and "exit code 1" in last, log
    assert "every request finished" not in log and "Traceback" not in log, log


@pytest.mark.timeout(180)
def test_core_stuck_with_a_request_in_flight_is_named_and_stopped(tiny_model_dir, tmp_path):
    proc = _serve(tiny_model_dir, tmp_path, "--step-timeout", "3")
    log, core, took, results = _signal_core_mid_stream(proc, signal.SIGSTOP)
    assert proc.returncode == 1, log
    assert 3 <= took < 20, (took, log)
    assert "engine_dead" in results["stream"] and "no step came back" in results["stream"], results
    failed = [line for line in log.splitlines() if "engine failed" in line]
    assert failed and f"pid {core}" in failed[0] and "(the process was stopped)" in failed[0], log
    assert "--step-timeout 3" in failed[0] and "Traceback" not in log, log


def test_a_running_core_prints_every_threads_stack_when_asked(tmp_path):
    # what the watchdog does before killing a core that is alive but makes no progress: faulthandler writes from
    # the signal handler, so it works while the main thread is stuck (here: waiting for Init in a blocking read)
    script = tmp_path / "dump.py"
    script.write_text(
        "import time\nfrom vdeploy.engine.core_endpoint import LocalCore\n"
        "core = LocalCore()\ntime.sleep(3)\nassert core.state() == 'running', core.state()\n"
        "core.dump_stacks()\ntime.sleep(1)\ncore.kill()\nprint(core.wait_exit(10))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "killed by SIGKILL" in done.stdout  # the dump did not end the process: the kill did
    assert "Current thread" in done.stderr and "core_process.py" in done.stderr, done.stderr


@pytest.mark.timeout(180)
def test_core_stuck_at_shutdown_is_killed_after_a_short_grace(tiny_model_dir, tmp_path):
    proc = _serve(tiny_model_dir, tmp_path, "--drain-timeout", "1", "--step-timeout", "3")
    seen: list[str] = []
    core = None
    try:
        url = _url(proc, seen)
        # the URL line comes just before uvicorn installs its signal handlers: wait until it answers
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        core = _core_pid(proc.pid)
        os.kill(core, signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        log, _ = proc.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        _kill_quietly(proc, core)
    head = "".join(seen)
    assert "--step-timeout has no effect" not in head, head  # the engine process has a watchdog
    assert proc.returncode == 0, log  # idle when stopped: the watchdog had nothing to wait for
    assert took < 15, (took, log)  # the drain (1 s), then 5 s for the core to exit; not 30 s
    last = log.strip().splitlines()[-1]
    assert f"pid {core}) did not exit within 5 s and was killed" in last, log


def test_step_timeout_without_an_engine_process_at_tp1_is_warned_about(tiny_model_dir, tmp_path):
    explain = [sys.executable, "-m", "vdeploy", "serve", str(tiny_model_dir), "--step-timeout", "3", "--explain"]
    env = {**os.environ, "VDEPLOY_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": "", "COLUMNS": "200"}
    threaded = subprocess.run([*explain, "--no-engine-process"], capture_output=True, text=True, timeout=120, env=env)
    watched = subprocess.run(explain, capture_output=True, text=True, timeout=120, env=env)
    assert threaded.returncode == watched.returncode == 0, threaded.stderr + watched.stderr
    assert "--step-timeout has no effect with --no-engine-process" in threaded.stderr, threaded.stderr
    assert "--step-timeout has no effect" not in watched.stderr, watched.stderr
