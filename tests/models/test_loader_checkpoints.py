"""The loader: sharded checkpoints, dtypes, dummy weights, and clear errors for broken checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import CheckpointError, ConfigError
from vdeploy.layers.forward_context import AttentionMetadata, ForwardContext
from vdeploy.models.loader import checkpoint_files, load_model, resolve_dtype
from vdeploy.testing.reference_runner import ReferenceRunner

TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    torch.manual_seed(3)
    hf = Qwen2ForCausalLM(Qwen2Config(**TINY)).float()
    with torch.no_grad():
        for param in hf.parameters():
            param.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("sharded")
    hf.save_pretrained(path, max_shard_size="60KB")
    return path, hf


def _load(path, **kw):
    cfg = ModelConfig.from_path(path)
    engine = EngineConfig(model=str(path), **{k: v for k, v in kw.items() if k in ("load_format", "seed")})
    return load_model(engine, cfg, ParallelState(), "cpu", kw.get("dtype", "float32"), quiet=True), cfg


def test_sharded_checkpoint_loads_every_tensor(sharded):
    path, hf = sharded
    files = checkpoint_files(path)
    assert len(files) > 2 and (path / "model.safetensors.index.json").is_file()
    model, _ = _load(path)
    ours = dict(model.named_parameters())
    reference = hf.state_dict()
    layer = "model.layers.1."
    q, k, v = ours[layer + "self_attn.qkv_proj.bias"].split([64, 32, 32])
    torch.testing.assert_close(k, reference[layer + "self_attn.k_proj.bias"], rtol=0, atol=0)
    gate, up = ours[layer + "mlp.gate_up_proj.weight"].chunk(2)
    torch.testing.assert_close(up, reference[layer + "mlp.up_proj.weight"], rtol=0, atol=0)
    torch.testing.assert_close(ours["lm_head.weight"], reference["lm_head.weight"], rtol=0, atol=0)
    assert model.load_stats.files == len(files)
    assert model.load_stats.weight_bytes == sum(p.numel() * 4 for p in model.parameters())
    assert all(p.device.type == "cpu" and not p.requires_grad for p in model.parameters())


def test_bf16_load_converts_and_runs(sharded):
    path, hf = sharded
    model, cfg = _load(path, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    runner = ReferenceRunner(model, num_kv_heads=2, head_dim=16, num_layers=2, num_blocks=8, block_size=8)
    logits = runner.step({"a": [1, 2, 3, 4]})["a"]
    with torch.no_grad():
        expected = hf(torch.tensor([[1, 2, 3, 4]])).logits[0]
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, atol=0.05, rtol=0.05)


def test_dtype_resolution():
    cfg = ModelConfig.from_dict({"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 8,
                                 "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                                 "torch_dtype": "bfloat16"})
    assert resolve_dtype("auto", cfg) == torch.bfloat16
    assert resolve_dtype("fp16", cfg) == torch.float16
    assert resolve_dtype("float32", cfg) == torch.float32
    with pytest.raises(ConfigError, match="int4"):
        resolve_dtype("int4", cfg)


def test_dummy_weights_have_config_shapes_and_are_seeded(sharded):
    path, _ = sharded
    model, cfg = _load(path, load_format="dummy", seed=5)
    again, _ = _load(path, load_format="dummy", seed=5)
    other, _ = _load(path, load_format="dummy", seed=6)
    params = dict(model.named_parameters())
    assert params["model.layers.0.self_attn.qkv_proj.weight"].shape == ((4 + 2 * 2) * 16, 64)
    assert params["model.layers.0.mlp.gate_up_proj.weight"].shape == (2 * 96, 64)
    assert params["model.layers.0.mlp.down_proj.weight"].shape == (64, 96)
    assert params["model.embed_tokens.weight"].shape == (128, 64)
    assert torch.all(params["model.norm.weight"] == 1.0)
    assert 0.015 < params["lm_head.weight"].std() < 0.025
    for name, param in again.named_parameters():
        assert torch.equal(param, params[name])
    assert not torch.equal(dict(other.named_parameters())["lm_head.weight"], params["lm_head.weight"])
    logits = ReferenceRunner(model, num_kv_heads=2, head_dim=16, num_layers=2, num_blocks=4,
                             block_size=8).step({"a": [1, 2, 3]})["a"]
    assert torch.isfinite(logits).all() and logits.abs().max() < 10


def _single_file_copy(sharded, tmp_path, edit):
    src, _ = sharded
    tensors = {}
    for file in checkpoint_files(src):
        tensors.update(load_file(file))
    edit(tensors)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    return tmp_path


def test_missing_tensor_is_named(sharded, tmp_path):
    path = _single_file_copy(sharded, tmp_path, lambda t: t.pop("model.layers.1.self_attn.v_proj.weight"))
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.self_attn\.v_proj\.weight.*missing"):
        _load(path)


def test_wrong_shape_names_file_and_tensor(sharded, tmp_path):
    def shrink(tensors):
        name = "model.layers.0.mlp.down_proj.weight"
        tensors[name] = tensors[name][:, :90].contiguous()

    path = _single_file_copy(sharded, tmp_path, shrink)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor model\.layers\.0\.mlp\.down_proj\.weight"):
        _load(path)


def test_unexpected_tensor_is_reported(sharded, tmp_path):
    path = _single_file_copy(sharded, tmp_path, lambda t: t.update({"model.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"model\.extra\.weight"):
        _load(path)


def test_index_naming_a_missing_shard(sharded, tmp_path):
    src, _ = sharded
    index = json.loads((src / "model.safetensors.index.json").read_text())
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="missing"):
        checkpoint_files(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_files(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no index and no safetensors shard"):
        checkpoint_files(tmp_path / "empty")


def test_attention_without_kv_cache_matches_paged_prefill(sharded):
    """The warm-up pass before the KV cache exists (empty kv_caches) gives the same prefill output."""
    path, _ = sharded
    model, cfg = _load(path)
    prompts = {"a": [5, 6, 7, 8, 9], "b": [1, 2]}
    paged = ReferenceRunner(model, num_kv_heads=2, head_dim=16, num_layers=2, num_blocks=8, block_size=4)
    expected = paged.step(prompts)
    ids = torch.tensor(prompts["a"] + prompts["b"])
    positions = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    meta = AttentionMetadata(
        slot_mapping=torch.full((7,), -1), query_start_loc=torch.tensor([0, 5, 7], dtype=torch.int32),
        seq_lens=torch.tensor([5, 2], dtype=torch.int32), block_tables=torch.zeros(2, 1, dtype=torch.int32),
        max_query_len=5, max_seq_len=5, num_decodes=0, block_size=4)
    with torch.inference_mode():
        logits = model.compute_logits(model(ids, positions, ForwardContext(attn=meta, kv_caches=[])))
    torch.testing.assert_close(logits[:5], expected["a"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[5:], expected["b"], atol=1e-5, rtol=1e-5)


def test_registry_picks_the_family_class():
    from vdeploy.models.llama import LlamaForCausalLM, Qwen2ForCausalLM
    from vdeploy.models.registry import get_model_class

    base = {"vocab_size": 8, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2}
    llama = ModelConfig.from_dict({"architectures": ["LlamaForCausalLM"], **base})
    # a window that slides layer 0 (max_window_layers 0): no layer slides below max_window_layers (transformers)
    qwen2 = ModelConfig.from_dict({"architectures": ["Qwen2ForCausalLM"], **base, "use_sliding_window": True,
                                   "sliding_window": 16, "max_window_layers": 0})
    assert get_model_class(llama) is LlamaForCausalLM
    assert get_model_class(qwen2) is Qwen2ForCausalLM
    with pytest.raises(ConfigError, match="sliding-window"):
        Qwen2ForCausalLM(qwen2)
