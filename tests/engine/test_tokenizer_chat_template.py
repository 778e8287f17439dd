"""Tokenizer files and the sandboxed chat template."""

import json

import pytest
from engine_test_tokenizer import write_tokenizer_dir

from vdeploy.engine.tokenizer import Tokenizer
from vdeploy.errors import CheckpointError, ConfigError


def test_chat_template_renders_with_added_token_dict_bos(tmp_path):
    tok = Tokenizer.from_dir(write_tokenizer_dir(tmp_path))
    assert tok.bos_token == "<|im_start|>" and tok.eos_token_id == tok.token_to_id("<|im_end|>")
    msgs = [{"role": "user", "content": "Hi"}]
    text = tok.apply_chat_template(msgs)
    assert text == "<|im_start|><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert not tok.apply_chat_template(msgs, add_generation_prompt=False).endswith("assistant\n")
    ids = tok.encode_chat(msgs)
    assert ids[:2] == [tok.bos_token_id, tok.bos_token_id] and tok.decode(ids, skip_special_tokens=False) == text


def test_raise_exception_and_sandbox_become_config_errors(tmp_path):
    tok = Tokenizer.from_dir(write_tokenizer_dir(tmp_path))
    with pytest.raises(ConfigError, match="bad role tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}])
    hostile = Tokenizer.from_dir(write_tokenizer_dir(tmp_path / "h", "{{ messages.append(1) }}"))
    with pytest.raises(ConfigError):
        hostile.apply_chat_template([{"role": "user", "content": "x"}])
    dunder = Tokenizer.from_dir(write_tokenizer_dir(tmp_path / "d", "{{ ''.__class__.__mro__ }}"))
    with pytest.raises(ConfigError):
        dunder.apply_chat_template([])
    # a caller's variable that shadows a name the template calls (chat_template_kwargs): an error, never a crash
    calls = Tokenizer.from_dir(write_tokenizer_dir(tmp_path / "n", "{% set ns = namespace(x=1) %}{{ ns.x }}"))
    assert calls.apply_chat_template([]) == "1"
    with pytest.raises(ConfigError, match="TypeError"):
        calls.apply_chat_template([], namespace=3)
    # a template that does not parse: one ConfigError naming the line, not a jinja2 traceback
    broken = Tokenizer.from_dir(write_tokenizer_dir(tmp_path / "s", "{% for m in messages %}\n{{ m.content"))
    with pytest.raises(ConfigError, match="syntax error at line 2") as info:
        broken.apply_chat_template([{"role": "user", "content": "x"}])
    assert "--chat-template" in info.value.hint


def test_template_override_file_and_tojson_and_missing_files(tmp_path):
    model_dir = write_tokenizer_dir(tmp_path / "m")
    override = tmp_path / "t.jinja"
    override.write_text("{{ messages | tojson }}")
    tok = Tokenizer.from_dir(model_dir, chat_template_file=override)
    assert json.loads(tok.apply_chat_template([{"role": "user", "content": "é<"}])) == [{"role": "user", "content": "é<"}]
    with pytest.raises(ConfigError):
        Tokenizer.from_dir(model_dir, chat_template_file=tmp_path / "missing.jinja")
    with pytest.raises(CheckpointError):
        Tokenizer.from_dir(tmp_path / "empty")
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (model_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="no chat template"):
        Tokenizer.from_dir(model_dir).apply_chat_template([])
