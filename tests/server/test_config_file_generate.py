"""`--config FILE.yaml` on generate and bench (issue 16), through the real entry point: the file's settings apply,
an option given on the command line wins over the file, and a file setting that does nothing here is warned about."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _vdeploy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdeploy", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "CUDA_VISIBLE_DEVICES": ""})


def test_generate_reads_the_file_and_options_win(tiny_model_dir, tmp_path):
    config = tmp_path / "engine.yaml"
    config.write_text("max-model-len: 24\ndtype: float32\ndevice: cpu\ngpu-memory-utilization: 0.5\n")
    prompt = "hello " * 30  # ~30+ tokens: longer than the file's context
    too_long = _vdeploy("generate", str(tiny_model_dir), "--config", str(config), "--no-chat", "-p", prompt,
                        "--max-tokens", "4", "--json")
    assert too_long.returncode != 0 and "24" in too_long.stderr, too_long.stderr  # the file's max-model-len held
    assert "--gpu-memory-utilization has no effect" in too_long.stderr
    done = _vdeploy("generate", str(tiny_model_dir), "--config", str(config), "--max-model-len", "0.2k",
                    "--no-chat", "-p", prompt, "--max-tokens", "4", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["completion_tokens"] == 4  # the option's 200 over the file's 24


def test_bench_reads_the_file(tiny_model_dir, tmp_path):
    config = tmp_path / "engine.yaml"
    config.write_text("max_num_seqs: 2\ndevice: cpu\ndtype: float32\nload-format: dummy\n")
    done = _vdeploy("bench", str(tiny_model_dir), "--config", str(config), "--num-prompts", "3", "--input-len", "8",
                    "--output-len", "4", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["load_format"] == "dummy", report  # from the file (bench's own default is safetensors)


def test_generate_takes_a_file_setting_that_an_option_also_gives(tiny_model_dir, tmp_path):
    # max-loras in the file and the LoRA options, num-speculative-tokens beside --speculative-config: one mapping
    # (the option wins), where the same keyword used to reach the engine twice (a TypeError)
    config = tmp_path / "engine.yaml"
    config.write_text("dtype: float32\ndevice: cpu\nmax-loras: 2\nnum-speculative-tokens: 3\n")
    done = _vdeploy("generate", str(tiny_model_dir), "--config", str(config), "--no-chat", "-p", "hello",
                    "--max-tokens", "3", "--json", "--max-loras", "1",
                    "--speculative-config", '{"method": "ngram", "num_speculative_tokens": 2}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["completion_tokens"] == 3
