"""Ollama's verbs, real (issue 16): pull, ls/list, show, ps, stop, run (under a pseudo-terminal), and a hint for an
unknown command. ps/run/stop talk to tests/cli/fake_server.py, registered the way `vdeploy serve` registers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_testlib import PtySession, vdeploy

HERE = Path(__file__).resolve().parent


def _cached_model(home: Path) -> Path:
    directory = home / "models" / "deepseek-ai" / "DeepSeek-R1"
    directory.mkdir(parents=True)
    config = json.loads((Path(__file__).parents[2] / "vdeploy/model_configs/deepseek-r1.config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "model-00001-of-00001.safetensors").write_bytes(b"\0" * 4096)
    return directory


def test_ls_lists_cached_models_with_size_and_quantization(tmp_path):
    _cached_model(tmp_path)
    for verb in ("ls", "list"):
        done = vdeploy(verb, "--json", home=tmp_path)
        assert done.returncode == 0, done.stderr
        (model,) = [m for m in json.loads(done.stdout)["models"] if m["name"] != "demo"]
        assert model["name"] == "deepseek-ai/DeepSeek-R1" and model["quantization"] == "fp8"
        assert model["size_bytes"] > 4096 and model["complete"]
    table = vdeploy("ls", home=tmp_path).stdout
    assert "deepseek-ai/DeepSeek-R1" in table and "fp8" in table and ("ago" in table or "just now" in table)


def test_show_summarizes_a_bundled_config_and_a_download(tmp_path):
    bundled = json.loads(vdeploy("show", "deepseek-r1", "--json", home=tmp_path).stdout)
    assert bundled["architecture"] == "DeepseekV3ForCausalLM" and bundled["parameters_b"] > 600
    assert bundled["quantization"] == "fp8" and "bundled" in bundled["source"]
    _cached_model(tmp_path)
    downloaded = json.loads(vdeploy("show", "deepseek-ai/DeepSeek-R1", "--json", home=tmp_path).stdout)
    assert "downloaded" in downloaded["source"] and downloaded["weights_on_disk_gb"] is not None


def test_pull_a_bundled_name_downloads_its_hub_id(tmp_path):
    # Hugging Face fails at once on a refused connection (ModelScope's client retries for seconds)
    unreachable = {"HF_ENDPOINT": "http://127.0.0.1:9", "VDEPLOY_SOURCE": "huggingface"}
    done = vdeploy("pull", "deepseek-r1", "--json", home=tmp_path, env=unreachable)
    assert done.returncode != 0 and "deepseek-ai/DeepSeek-R1" in json.loads(done.stdout)["error"]


def test_unknown_commands_get_a_hint(tmp_path):
    for typed, hint in (("pul", "vdeploy pull"), ("chat", "vdeploy run"), ("sevre", "vdeploy serve")):
        done = vdeploy(typed, home=tmp_path)
        assert done.returncode == 2 and f"Did you mean: {hint}?" in done.stderr, done.stderr


@pytest.fixture
def fake_server(tmp_path):
    env = {**os.environ, "VDEPLOY_RUNTIME_DIR": str(tmp_path / "run"), "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_server.py"), "fake-r1"], stdout=subprocess.PIPE,
                            text=True, env=env)
    port = int(proc.stdout.readline())
    yield proc, port, {"VDEPLOY_RUNTIME_DIR": env["VDEPLOY_RUNTIME_DIR"]}
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_ps_run_stop_against_a_local_server(tmp_path, fake_server):
    proc, port, env = fake_server
    (row,) = json.loads(vdeploy("ps", "--json", home=tmp_path, env=env).stdout)["servers"]
    assert row["model"] == "fake-r1" and row["port"] == port and row["pid"] == proc.pid and row["tp"] == 2
    assert row["responding"] and row["served_names"] == ["fake-r1"] and row["kv_usage"] == 0.25
    table = vdeploy("ps", home=tmp_path, env=env).stdout
    assert "fake-r1" in table and "25%" in table and str(proc.pid) in table

    chat = PtySession("run", "fake-r1", env={**env, "VDEPLOY_HOME": str(tmp_path), "NO_COLOR": "1"})
    chat.expect(">>> ")
    assert f"127.0.0.1:{port}" in chat.output
    chat.send("hello")
    chat.expect("turn 1")
    chat.send("again")  # the history goes back to the server: two user turns now
    chat.expect("turn 2")
    chat.send("/bye")
    assert chat.wait() == 0
    assert "Thinking:\npondering" in chat.output.replace("\r", "") and "answer turn 1" in chat.output

    done = vdeploy("stop", "fake-r1", "--timeout", "10", home=tmp_path, env=env)
    assert done.returncode == 0 and "stopped" in done.stderr, done.stderr
    assert proc.wait(timeout=10) != 0
    assert json.loads(vdeploy("ps", "--json", home=tmp_path, env=env).stdout)["servers"] == []  # stale one pruned
    missing = vdeploy("stop", "fake-r1", home=tmp_path, env=env)
    assert missing.returncode == 2 and "no running vdeploy server" in missing.stderr


def test_run_in_process_with_the_demo_model(tmp_path):
    """No server serves it: `run` loads the model itself. Named by a hub id whose download is the demo model."""
    from demo_testlib import skip_if_demo_unreachable
    from vdeploy.models.demo import ensure_demo_model

    with skip_if_demo_unreachable():
        demo = ensure_demo_model()
    (tmp_path / "models" / "HuggingFaceTB").mkdir(parents=True)
    (tmp_path / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct").symlink_to(demo)
    chat = PtySession("run", "HuggingFaceTB/SmolLM2-135M-Instruct", "--max-tokens", "8", "--temperature", "0",
                      env={"VDEPLOY_HOME": str(tmp_path), "VDEPLOY_RUNTIME_DIR": str(tmp_path / "run")})
    chat.expect(">>> ", timeout=120)
    assert "in-process engine" in chat.output
    asked = len(chat.output)
    chat.send("Say hi")
    chat.expect(">>> ", timeout=60, after=asked)  # the reply streamed, then the next prompt
    chat.send("/bye")
    assert chat.wait() == 0
    reply = chat.output.split("Say hi", 1)[1].split(">>> ", 1)[0].strip()
    assert reply, chat.output
    assert "Say hi" in (tmp_path / "run_history").read_text()  # the typed lines outlive the session


def test_a_real_serve_is_listed_by_ps_and_stopped(tmp_path):
    """The record `vdeploy serve` keeps: listed while it serves, gone after `vdeploy stop` drained it."""
    from demo_testlib import skip_if_demo_unreachable
    from vdeploy.models.demo import ensure_demo_model

    with skip_if_demo_unreachable():
        ensure_demo_model()
    env = {"VDEPLOY_RUNTIME_DIR": str(tmp_path / "run")}
    server = PtySession("serve", "--port", "0", "--no-engine-process", env={**env, "COLUMNS": "200"})
    try:
        server.expect("serving", timeout=120)
        (row,) = json.loads(vdeploy("ps", "--json", home=tmp_path, env=env).stdout)["servers"]
        assert row["pid"] == server.proc.pid and row["responding"] and row["kv_usage"] is not None
        assert row["served_names"] == [row["model"]] and f":{row['port']}/v1" in server.output
        done = vdeploy("stop", str(row["port"]), home=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert server.wait() == 0
        assert list((tmp_path / "run").glob("*.json")) == []  # serve removed its own record
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_run_ends_the_reply_line_before_an_engine_failure(capsys):
    """A rank dying mid-reply: the partial answer's line is closed, so the error never reads as generated text."""
    from vdeploy.cli.chat import _reply
    from vdeploy.executor.base import ExecutorError

    class DyingBackend:
        def stream(self, history, sampling):
            yield "content", "alphabets"
            raise ExecutorError("rank 1 (pid 1) died with exit code -9")

    with pytest.raises(ExecutorError):
        _reply(DyingBackend(), [], {}, "", "")
    assert capsys.readouterr().out == "alphabets\n"
