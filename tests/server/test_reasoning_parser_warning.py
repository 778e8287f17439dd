"""`--reasoning-parser deepseek_r1` on a model that never writes `</think>` (issue 16: every answer silently landed in
reasoning_content) is warned about before loading, judged from the tokenizer and the chat template."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

WARNING = "--reasoning-parser deepseek_r1, but this model has no </think> token"


def _serve_explain(model_dir, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdeploy", "serve", str(model_dir), "--explain", *extra], capture_output=True,
        text=True, timeout=120, env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "CUDA_VISIBLE_DEVICES": ""})


def test_warns_when_the_model_never_closes_a_think_block(tiny_model_dir, tmp_path):
    done = _serve_explain(tiny_model_dir, "--reasoning-parser", "deepseek_r1")
    assert done.returncode == 0, done.stderr
    assert WARNING in done.stdout + done.stderr
    assert WARNING not in (lambda d: d.stdout + d.stderr)(_serve_explain(tiny_model_dir))  # parser none: silent

    thinking = tmp_path / "thinking"  # the same model whose template knows the block (as R1's templates do)
    shutil.copytree(tiny_model_dir, thinking)
    config = json.loads((thinking / "tokenizer_config.json").read_text())
    config["chat_template"] = "{# history: answers without their <think>...</think> #}" + config["chat_template"]
    assert "</think>" in config["chat_template"]
    (thinking / "tokenizer_config.json").write_text(json.dumps(config))
    done = _serve_explain(thinking, "--reasoning-parser", "deepseek_r1")
    assert done.returncode == 0 and WARNING not in done.stdout + done.stderr, done.stderr


def test_a_tokenizer_with_the_token_is_trusted():
    from vdeploy.server.reasoning import never_closes_thinking

    class Vocab:
        chat_template = ""

        def __init__(self, ids):
            self.ids = ids

        def token_to_id(self, token):
            return self.ids.get(token)

    assert never_closes_thinking(Vocab({}))
    assert not never_closes_thinking(Vocab({"</think>": 7}))
    assert not never_closes_thinking(None)
