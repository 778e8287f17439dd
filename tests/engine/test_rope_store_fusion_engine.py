"""The engine's greedy tokens with rotary fused into the KV-cache store (ops.rope_store_kv, the attention layer's
default) equal those of the separate rotary + store_kv kernels, on tiny Llama / Qwen2 checkpoints.

On the CPU the ops dispatch to the torch twins, where both paths are the same torch code. So here the ops the
two paths differ in, and the attention that reads their output, run the Triton kernels under the interpreter, as on
a GPU: the fused kernel (which also hands its rotated keys to the fresh-prompt attention kernel) against rotary.py
then store_kv.py. Chunked prefill and prefix caching put every kind of step through both (decodes, fresh prompts
read from this step's keys, extends over a cached prefix).
"""

import pytest
import torch

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.layers import ops
from vdeploy.layers.attention import Attention
from vdeploy_kernels import paged_attention as triton_paged
from vdeploy_kernels.rope_store_kv import rope_store_kv as triton_rope_store_kv
from vdeploy_kernels.rotary import rotary as triton_rotary
from vdeploy_kernels.store_kv import store_kv as triton_store_kv

PROMPTS = [[(37 * i + 11 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([13, 40, 6])]
PROMPTS.append(PROMPTS[1][:24] + [9, 10, 11])  # 6 blocks of 4 shared with prompt 1: an extend over a prefix


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def checkpoint(request, tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp(request.param), request.param, dtype="float32", num_shards=1)


@pytest.fixture(scope="module")
def llama_checkpoint(tmp_path_factory):
    # the interpreter is slow: one family (Qwen2 differs only by the projection's bias, before these kernels)
    return write_tiny_checkpoint(tmp_path_factory.mktemp("llama"), "llama", dtype="float32", num_shards=1)


def triton_attention(q, kv_cache, meta, scale, k_scale=1.0, v_scale=1.0, new_kv=None):
    return triton_paged.paged_attention(q, kv_cache, meta, scale, k_scale=k_scale, v_scale=v_scale, new_kv=new_kv)


def greedy(checkpoint, monkeypatch, fused: bool, calls: list):
    monkeypatch.setattr(Attention, "fuse_rope_store", fused)
    monkeypatch.setattr(ops, "paged_attention", triton_attention)
    if fused:
        def fused_op(*args, **kwargs):
            calls.append(kwargs["return_k"])
            return triton_rope_store_kv(*args, **kwargs)

        monkeypatch.setattr(ops, "rope_store_kv", fused_op)
        monkeypatch.setattr(ops, "attention_reads_new_kv", triton_paged.attention_reads_new_kv)
    else:
        monkeypatch.setattr(ops, "rotary", triton_rotary)
        monkeypatch.setattr(ops, "store_kv", triton_store_kv)
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=96,
             enable_prefix_caching=True, max_num_batched_tokens=32) as llm:
        outs = llm.generate(PROMPTS, params)
    monkeypatch.undo()
    return [o.outputs[0].token_ids for o in outs]


def test_fused_rope_store_keeps_greedy_tokens(llama_checkpoint, monkeypatch):
    calls: list[bool] = []
    separate = greedy(llama_checkpoint, monkeypatch, fused=False, calls=calls)
    fused = greedy(llama_checkpoint, monkeypatch, fused=True, calls=calls)
    assert all(len(t) == 8 for t in separate)
    assert fused == separate
    # both kinds of launch ran: decode steps keep no keys, fresh prompts hand theirs to the attention kernel
    assert True in calls and False in calls


def test_fused_path_is_the_default_and_the_layer_rotates(checkpoint):
    """With the twins (the CPU dispatch), the default fused layer gives the tokens the separate path gives."""
    assert Attention.fuse_rope_store is True
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    runs = []
    for fused in (True, False):
        Attention.fuse_rope_store = fused
        try:
            with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=96) as llm:
                runs.append([o.outputs[0].token_ids for o in llm.generate(PROMPTS, params)])
                attn = llm.core.executor.runner.model.model.layers[0].self_attn.attn
                assert attn.rotary_emb is not None
        finally:
            Attention.fuse_rope_store = True
    assert runs[0] == runs[1]
    assert torch.is_tensor(attn.rotary_emb.cos_sin_cache)
