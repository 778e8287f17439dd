"""`vdeploy serve` as a user runs it: a real process on an ephemeral port, SIGTERM drains the in-flight request and
exits 0; model resolution never downloads by surprise; the memory planner refuses what cannot fit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import httpx
import pytest

from vdeploy.errors import CheckpointError, ConfigError, DoesNotFitError


def _serve_env(tmp_path) -> dict[str, str]:
    # VDEPLOY_HOME isolates the model store; CUDA hidden so the planner takes the CPU path on any machine
    return {**os.environ, "VDEPLOY_HOME": str(tmp_path / "home"), "CUDA_VISIBLE_DEVICES": "",
            "PYTHONUNBUFFERED": "1"}


def test_serve_prints_config_and_sigterm_drains_in_flight_request(tiny_model_dir, tmp_path):
    cmd = [sys.executable, "-m", "vdeploy", "serve", str(tiny_model_dir), "--port", "0", "--max-model-len", "256",
           "--served-model-name", "tiny-cli", "--served-model-name", "tiny-alias", "--drain-timeout", "30",
           "--json-logs"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_serve_env(tmp_path))
    lines: list[str] = []
    url = None
    try:
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"serving tiny-cli at (http://127\.0\.0\.1:\d+)/v1", line)
            url = found.group(1) if found else None
        assert url is not None, "".join(lines)
        printed = "".join(lines)
        assert "profile" in printed and "reasoning parser" in printed and "none" in printed
        assert "max model len" in printed and "256" in printed and "tiny-cli, tiny-alias" in printed
        # every alias is listed and accepted; an answer carries the name it was asked by, as vLLM's
        assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == ["tiny-cli", "tiny-alias"]
        aliased = httpx.post(f"{url}/v1/completions", json={"model": "tiny-alias", "prompt": "Hi", "max_tokens": 2})
        assert aliased.status_code == 200 and aliased.json()["model"] == "tiny-alias", aliased.text

        body = {"model": "tiny-cli", "prompt": "Hello", "max_tokens": 200, "ignore_eos": True, "stream": True}
        result: dict = {}
        first_chunk = threading.Event()

        def stream() -> None:
            text, finish = "", None
            with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        choice = json.loads(line[6:])["choices"][0]
                        text, finish = text + choice["text"], choice["finish_reason"] or finish
                        first_chunk.set()
                    if line == "data: [DONE]":
                        result["done"] = True
            result["finish"] = finish

        reader = threading.Thread(target=stream)
        reader.start()
        assert first_chunk.wait(60)
        proc.send_signal(signal.SIGTERM)
        reader.join(60)
        assert result == {"done": True, "finish": "length"}  # the in-flight request ran to its end
        assert proc.wait(60) == 0
        rest = proc.stdout.read()
        assert "stopped" in rest, rest
        # --json-logs: uvicorn's lines, the access line of our request included, are JSON objects
        records = [json.loads(line) for line in (printed + rest).splitlines() if line.startswith('{"ts"')]
        assert any(r["logger"] == "uvicorn.access" and "POST /v1/completions" in r["message"] for r in records)
        assert {"ts", "level", "logger", "message"} <= set(records[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_an_id_that_is_not_downloaded(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vdeploy", "serve", "deepseek-ai/DeepSeek-R1"], capture_output=True,
                          text=True, env=_serve_env(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert "not downloaded" in proc.stderr and "--download" in proc.stderr


def test_model_source_resolution(tmp_path, monkeypatch, tiny_model_dir):
    from vdeploy.server.model_source import resolve_model_source

    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    by_path = resolve_model_source(str(tiny_model_dir))
    assert (by_path.origin, by_path.path) == ("path", tiny_model_dir.resolve())
    with pytest.raises(CheckpointError, match="no such model directory"):
        resolve_model_source(str(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="not downloaded"):
        resolve_model_source("org/model")
    stored = tmp_path / "models" / "org" / "model"
    stored.mkdir(parents=True)
    (stored / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    found = resolve_model_source("org/model")
    assert (found.origin, found.path, found.default_served_name) == ("downloaded", stored.resolve(), "org/model")


def test_memory_planner_refuses_r1_on_one_gpu(tmp_path):
    from vdeploy.config import EngineConfig, ModelConfig, ParallelConfig
    from vdeploy.env.hardware import manual_hardware
    from vdeploy.env.host import detect_host
    from vdeploy.model_configs import config_path
    from vdeploy.server.deployment import check_memory

    r1 = ModelConfig.from_path(config_path("deepseek-r1"))
    one_h100 = manual_hardware(1, 80)
    with pytest.raises(DoesNotFitError, match="does not fit"):
        check_memory(r1, EngineConfig(model="r1", device="cuda"), one_h100, detect_host(), tmp_path)
    with pytest.raises(DoesNotFitError, match="needs 8 GPUs"):
        cfg = EngineConfig(model="r1", device="cuda", parallel=ParallelConfig(tensor_parallel_size=8))
        check_memory(r1, cfg, one_h100, detect_host(), tmp_path)
    eight_h200 = manual_hardware(8, 141)
    cfg = replace(EngineConfig(model="r1", device="cuda"), parallel=ParallelConfig(tensor_parallel_size=8))
    assert "KV tokens" in check_memory(r1, cfg, eight_h200, detect_host(), tmp_path)
    # a TP that does not divide the heads is a layout error, not "does not fit"
    with pytest.raises(ConfigError, match="--tp 3: TP 3 does not divide the 128 attention heads"):
        cfg = EngineConfig(model="r1", device="cuda", parallel=ParallelConfig(tensor_parallel_size=3))
        check_memory(r1, cfg, eight_h200, detect_host(), tmp_path)


def test_public_bind_detection():
    from vdeploy.server.runner import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")


def test_resolve_deployment_profile_flags_parser_and_chat_template(tiny_model_dir, tmp_path):
    import shutil

    from vdeploy.errors import ConfigError
    from vdeploy.server.deployment import ServeOptions, resolve_deployment
    from vdeploy.server.launch import build_engine

    dep = resolve_deployment(ServeOptions(model=str(tiny_model_dir), profile="demo-cpu",
                                          engine_flags={"max_model_len": 128, "block_size": 8}))
    assert dep.profile.name == "demo-cpu" and dep.profile_reasons == ["chosen with --profile demo-cpu"]
    assert (dep.engine_config.scheduler.max_model_len, dep.provenance["max_model_len"]) == (128, "flag")
    assert dep.provenance["dtype"] == "profile:demo-cpu"
    assert dep.reasoning_parser == "none" and dep.served_model_name == tiny_model_dir.name

    distill = tmp_path / "DeepSeek-R1-Distill-Qwen-1.5B"
    shutil.copytree(tiny_model_dir, distill)
    assert resolve_deployment(ServeOptions(model=str(distill), profile="demo-cpu")).reasoning_parser == "deepseek_r1"
    with pytest.raises(ConfigError, match="unknown reasoning parser"):
        resolve_deployment(ServeOptions(model=str(tiny_model_dir), reasoning_parser="qwq"))
    with pytest.raises(ConfigError, match="chat template file not found"):
        resolve_deployment(ServeOptions(model=str(tiny_model_dir), chat_template=str(tmp_path / "none.jinja")))
    with pytest.raises(ConfigError, match="twice"):
        resolve_deployment(ServeOptions(model=str(tiny_model_dir), served_model_names=("a", "b", "a")))
    from vdeploy.cli.lora_options import lora_settings

    with pytest.raises(ConfigError, match="the name the model is served as"):  # its requests would get the base
        resolve_deployment(ServeOptions(model=str(tiny_model_dir), served_model_names=("tiny", "alias"),
                                        engine_flags=lora_settings(False, ["alias=/adapters/x"], None, None)))

    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    engine = build_engine(dep, str(template))
    try:
        assert engine.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}]) == "hi\n"
        assert engine.max_model_len == 128 and engine.model_name == tiny_model_dir.name
    finally:
        engine.close()
