"""`vdeploy serve --drain-timeout` at its deadline (issue 16): an open stream gets an OpenAI-shaped error event and
[DONE] (the official client raises APIError, not a broken read), a waiting non-stream request a 503 JSON, the log
holds no traceback, the process exits 0, and its last line says how many requests were cut."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from server_harness import read_serve_url

# --drain-timeout 0: the deadline is the signal itself, so whatever this machine's speed, all three are still open
LONG = {"model": "tiny", "prompt": "hello", "max_tokens": 500, "ignore_eos": True}


def _waiting(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("vdeploy_num_requests_waiting"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.timeout(180)
def test_drain_deadline_cuts_open_requests_with_errors_not_broken_connections(tiny_model_dir, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "vdeploy", "serve", str(tiny_model_dir), "--port", "0", "--max-model-len", "512",
         "--served-model-name", "tiny", "--drain-timeout", "0", "--max-num-seqs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "VDEPLOY_HOME": str(tmp_path), "VDEPLOY_RUNTIME_DIR": str(tmp_path / "run"),
             "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    results: dict[str, object] = {}
    try:
        url = read_serve_url(proc)
        streaming = threading.Event()

        def stream() -> None:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
            text = []
            try:
                for chunk in client.completions.create(model="tiny", prompt=LONG["prompt"], stream=True,
                                                       max_tokens=LONG["max_tokens"], extra_body={"ignore_eos": True}):
                    text.append(chunk.choices[0].text if chunk.choices else "")
                    streaming.set()
                results["stream"] = "finished"
            except openai.APIError as e:
                results["stream"] = e
            results["streamed"] = "".join(text)

        def waiting(name: str) -> None:
            results[name] = httpx.post(f"{url}/v1/completions", json=LONG, timeout=60)

        threads = [threading.Thread(target=stream)]
        threads[0].start()
        assert streaming.wait(60), "the stream never started"
        threads += [threading.Thread(target=waiting, args=(n,)) for n in ("a", "b")]  # queued: --max-num-seqs 1
        for t in threads[1:]:
            t.start()
        deadline = time.monotonic() + 60
        while _waiting(url) < 2:  # both are queued behind the stream (--max-num-seqs 1) before the signal
            assert time.monotonic() < deadline, "the two requests never queued"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log
    error = results["stream"]
    assert isinstance(error, openai.APIError), error  # an in-band error event, not "incomplete chunked read"
    assert "shut down before the request finished" in error.message and results["streamed"]
    for name in ("a", "b"):
        response = results[name]
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "shutting_down"
    assert "Traceback" not in log and "CancelledError" not in log and "Cancel " not in log, log
    assert log.strip().splitlines()[-1].startswith("stopped: 3 request(s) cut at the 0 s drain deadline"), log
