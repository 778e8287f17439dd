"""write_random_checkpoint: full-size random checkpoints, shard by shard, for benchmarks that load the same weights
into vdeploy and vLLM. Checked here at tiny sizes: HF transformers loads the shards and decodes the same greedy tokens
as vdeploy; the block-FP8 form carries every weight's scale and loads into vdeploy; the sharding follows the limit."""

from __future__ import annotations

import json

import torch

from tests.deepseek.test_deepseek_vs_hf import hf_greedy
from vdeploy.checkpoint.synthetic import tiny_config, write_random_checkpoint

PROMPT = [5, 17, 99, 3, 120, 41, 7, 8, 9]


def _greedy_ours(path, steps: int) -> list[int]:
    from vdeploy import LLM, SamplingParams

    llm = LLM(str(path), device="cpu", dtype="float32", max_model_len=128)
    try:
        out = llm.generate([PROMPT], SamplingParams(temperature=0, max_tokens=steps, ignore_eos=True))
        return list(out[0].outputs[0].token_ids)
    finally:
        llm.close()


def test_random_v2_checkpoint_in_shards_decodes_as_hf_does(tmp_path):
    from transformers import AutoModelForCausalLM

    config = tiny_config("deepseek_v2", dtype="float32")
    write_random_checkpoint(tmp_path, config, seed=3, shard_bytes=150_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2  # several shards, each within the limit or one tensor
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert _greedy_ours(tmp_path, 8) == hf_greedy(hf, PROMPT, 8)


def test_random_fp8_checkpoint_has_every_scale_and_loads(tmp_path):
    from safetensors import safe_open

    config = tiny_config("deepseek_v3", fp8=True, overrides={"hidden_size": 256, "moe_intermediate_size": 128,
                                                             "intermediate_size": 256})
    write_random_checkpoint(tmp_path, config, shard_bytes=1 << 20)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    names = set(index["weight_map"])
    fp8 = []
    for file in set(index["weight_map"].values()):
        with safe_open(str(tmp_path / file), "pt") as f:
            fp8 += [n for n in f.keys() if f.get_slice(n).get_dtype() == "F8_E4M3"]
    assert fp8 and all(n + "_scale_inv" in names for n in fp8)
    assert len(_greedy_ours(tmp_path, 4)) == 4


def test_random_checkpoint_is_seeded(tmp_path):
    from safetensors.torch import load_file

    config = tiny_config("llama", dtype="bfloat16")
    a = load_file(write_random_checkpoint(tmp_path / "a", config, seed=1) / "model.safetensors")
    b = load_file(write_random_checkpoint(tmp_path / "b", config, seed=1) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
