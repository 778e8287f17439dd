"""The server with the engine core in its own process (what `vdeploy serve` runs): the official client gets the same
greedy answers as with the in-thread engine, a client that leaves mid-stream frees its KV blocks, a killed engine
process is named in a 503 and /health (no hang), the channel refuses a pickled frame without unpickling it, and no
engine process outlives its server."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import openai
import pytest
from server_harness import MAX_WAITING, start_server


def _config(model_dir):
    from vdeploy.config import CacheConfig, EngineConfig, SchedulerConfig

    return EngineConfig(
        model=str(model_dir), dtype="float32", device="cpu", enforce_eager=True,
        cache=CacheConfig(block_size=16, num_gpu_blocks_override=256),
        scheduler=SchedulerConfig(max_num_seqs=32, max_num_batched_tokens=1024, max_model_len=256,
                                  max_waiting=MAX_WAITING),
    )


def _gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie (exited, not yet reaped by its parent) is gone too
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def proc_engine(tiny_model_dir):
    from vdeploy.engine.process_engine import ProcessAsyncEngine

    eng = ProcessAsyncEngine(_config(tiny_model_dir), model_name="tiny")
    yield eng
    eng.close()
    assert not eng._core.alive()  # close() leaves no engine process behind


@pytest.fixture(scope="module")
def proc_server(proc_engine):
    srv = start_server(proc_engine)
    yield srv
    srv.stop()


def test_official_client_matches_the_in_thread_engine(proc_server, server):
    def ask(url: str):
        with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60) as c:
            chat = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello world"}],
                                             max_tokens=16, temperature=0)
            streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "Hello world"}], max_tokens=16, temperature=0,
                stream=True) if ch.choices)
            comp = c.completions.create(model="tiny", prompt="The capital of", max_tokens=12, temperature=0, n=2,
                                        logprobs=2, stop=["Rome"])
            return (chat.choices[0].message.content, chat.usage.completion_tokens, streamed,
                    [(ch.text, ch.finish_reason, ch.logprobs.tokens, ch.logprobs.top_logprobs) for ch in comp.choices])

    in_process, in_thread = ask(proc_server.url), ask(server.url)
    assert in_process == in_thread
    assert in_process[0] == in_process[2]  # streamed and not streamed agree


def test_client_that_disconnects_mid_stream_frees_its_blocks(proc_server, proc_engine):
    total = proc_engine.stats().num_total_blocks
    body = {"model": "tiny", "prompt": "Hello world.", "max_tokens": 240, "ignore_eos": True, "stream": True,
            "temperature": 0}
    with httpx.stream("POST", f"{proc_server.url}/v1/completions", json=body, timeout=60) as response:
        chunks = 0
        for line in response.iter_lines():
            chunks += line.startswith("data: {")
            if chunks == 3:
                break  # leave while the request's next step is in flight
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stats = proc_engine.stats()
        if stats.num_running == 0 and stats.num_waiting == 0 and stats.num_free_blocks == total:
            break
        time.sleep(0.05)
    stats = proc_engine.stats()
    assert (stats.num_running, stats.num_waiting, stats.num_free_blocks) == (0, 0, total)
    assert stats.generation_tokens_total < 200  # it was aborted, not run to its end


def test_pickled_frame_is_refused_and_never_unpickled(proc_server, proc_engine, tmp_path):
    from vdeploy.engine.core_codec import ProtocolError, core_side_codec

    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Exploit())
    with pytest.raises(ProtocolError):
        core_side_codec().decode(payload)
    # the same bytes as a frame on the live channel: the core drops it and keeps serving
    with proc_engine._send_lock:
        proc_engine._core.sock.sendall(len(payload).to_bytes(4, "big") + payload)
    reply = httpx.post(f"{proc_server.url}/v1/completions", timeout=60,
                       json={"model": "tiny", "prompt": "Hello", "max_tokens": 4, "temperature": 0})
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 4
    assert not marker.exists()
    assert proc_engine.is_running


def test_killed_engine_process_is_named_and_unhealthy(tiny_model_dir):
    from vdeploy.engine.process_engine import ProcessAsyncEngine

    engine = ProcessAsyncEngine(_config(tiny_model_dir), model_name="tiny")
    srv = start_server(engine)
    try:
        assert httpx.get(f"{srv.url}/health").status_code == 200
        body = {"model": "tiny", "prompt": "Hello", "max_tokens": 240, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{srv.url}/v1/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: {"))
            os.kill(engine.pid, signal.SIGKILL)
            rest = "\n".join(lines)  # the stream ends (with an error event), it does not hang
        assert "SIGKILL" in rest
        health = httpx.get(f"{srv.url}/health")
        assert health.status_code == 503 and health.json()["error"]["code"] == "engine_dead"
        failed = httpx.post(f"{srv.url}/v1/completions", json={"model": "tiny", "prompt": "Hi", "max_tokens": 2},
                            timeout=30)
        assert failed.status_code == 503
        error = failed.json()["error"]
        assert error["code"] == "engine_dead" and "killed by SIGKILL" in error["message"], error
    finally:
        srv.stop()
        engine.close()


def test_engine_process_exits_when_its_server_dies(tiny_model_dir, tmp_path):
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from vdeploy.config import EngineConfig, SchedulerConfig
        from vdeploy.engine.process_engine import ProcessAsyncEngine
        engine = ProcessAsyncEngine(EngineConfig(model={str(tiny_model_dir)!r}, dtype="float32", device="cpu",
                                                 enforce_eager=True, scheduler=SchedulerConfig(max_model_len=256)))
        print(engine.pid, flush=True)
        time.sleep(600)
    """))
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        core_pid = int(server.stdout.readline())
        server.kill()  # no chance to clean up: the core must notice on its own
        server.wait(30)
        assert _gone(core_pid, 30), "the engine process outlived its server"
    finally:
        if server.poll() is None:
            server.kill()
