"""compressed-tensors W8A8 checkpoints (INT8 and FP8 weights, per-channel and per-tensor scales, dynamic per-token
activations), packed by the tests' own implementation (quant_testlib), load in vdeploy and match transformers on the
dequantized weights with each linear's input quantized per token the same way (at TP > 1, row-parallel layers quantize
each rank's slice): logits at TP 1, 2 and 4 (ranks in threads); through the engine at TP 1 and TP 2 (real rank
processes) the greedy tokens of a dense checkpoint of the dequantized weights, except at near-ties (activation
quantization is an approximation of the dense model)."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.models.quant_testlib import (
    PROMPTS,
    assert_logits_close,
    fake_quantize_activations,
    tiny_hf_model,
    vdeploy_logits,
    w8a8_config,
    w8a8_pack,
    write_quantized,
)
from tests.models.test_llama_tp_threads import run_thread_ranks
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.models.loader import load_model
from vdeploy.testing.reference_runner import ReferenceRunner

FORMATS = {  # name -> (family, weight type, strategy)
    "int8_channel_qwen2": ("qwen2", "int", "channel"),
    "int8_tensor_llama": ("llama", "int", "tensor"),
    "fp8_channel_llama": ("llama", "float", "channel"),
    "fp8_tensor_qwen2": ("qwen2", "float", "tensor"),
}


@pytest.fixture(scope="module", params=list(FORMATS))
def quantized(request, tmp_path_factory):
    family, kind, strategy = FORMATS[request.param]
    model = tiny_hf_model(family)
    path = tmp_path_factory.mktemp(request.param)
    with torch.no_grad():
        write_quantized(model, path / "quant", w8a8_config(kind, strategy),
                        lambda prefix, w: w8a8_pack(w, kind, strategy))
    model.save_pretrained(path / "dense")
    return request.param, kind, path, model


def _reference_logits(hf, kind: str, tp: int) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(hf)
    fake_quantize_activations(model, kind, tp)
    with torch.no_grad():
        return {k: model(torch.tensor([ids])).logits[0].float() for k, ids in PROMPTS.items()}


def _assert_close(ours, ref):
    assert_logits_close(ours, ref, atol=1e-3, rtol=1e-3)


def test_tp1_logits_match_transformers_with_per_token_activation_quantization(quantized):
    _, kind, path, hf = quantized
    _assert_close(vdeploy_logits(path / "quant", ParallelState()), _reference_logits(hf, kind, 1))


@pytest.mark.parametrize("tp", [2, 4])  # TP 4: each KV head (2) replicated on 2 ranks
def test_tp_logits_match_transformers_with_per_rank_activation_quantization(quantized, tp):
    _, kind, path, hf = quantized
    results = run_thread_ranks(tp, lambda parallel: vdeploy_logits(path / "quant", parallel))
    ref = _reference_logits(hf, kind, tp)
    for rank in range(tp):
        _assert_close(results[rank], ref)


def test_activation_quantization_is_a_close_approximation_of_the_dense_model(quantized):
    _, kind, path, hf = quantized
    ours = vdeploy_logits(path / "quant", ParallelState())
    with torch.no_grad():
        dense = {k: hf(torch.tensor([ids])).logits[0].float() for k, ids in PROMPTS.items()}
    tol = 0.02 if kind == "int" else 0.2  # e4m3 activations keep 3 mantissa bits
    for seq_id in PROMPTS:
        assert (ours[seq_id] - dense[seq_id]).abs().max() < tol


@pytest.mark.timeout(120)
def test_engine_greedy_tokens_follow_the_dense_dequantized_checkpoint_at_tp1_and_tp2(quantized):
    from tests.parallel.parallel_testlib import ENGINE, PROMPTS as ENGINE_PROMPTS
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.testing.greedy_agreement import greedy_agreement

    name, _, path, _ = quantized
    if name != "int8_tensor_llama":  # real processes cost seconds: one format through the engine
        pytest.skip("engine run on one format; the others are covered by the logits tests")
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, logprobs=5)

    def run(p, **kw):
        with LLM(str(p), **{**ENGINE, **kw}) as llm:
            return [o.outputs[0] for o in llm.generate(ENGINE_PROMPTS, params)]

    dense = run(path / "dense")
    for tp in (1, 2):
        agreement = greedy_agreement(dense, run(path / "quant", tensor_parallel_size=tp), near_tie=0.05)
        assert agreement.ok, agreement.divergences
        assert agreement.equal_steps >= 16


@pytest.mark.parametrize("quant", [
    {"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm"},
    {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False},
    w8a8_config("int", "tensor"), w8a8_config("float", "channel"),
], ids=["awq", "gptq", "int8", "fp8"])
def test_dummy_weights_of_a_quantized_config_are_usable(quant):
    """`--load-format dummy` on a quantized config (benchmarks without a checkpoint): weights of the usual dummy
    scale, GPTQ groups in order (the kernel's uniform-group path), finite logits that depend on the input."""
    from vdeploy.checkpoint.synthetic import tiny_config

    cfg = ModelConfig.from_dict(tiny_config("qwen2", overrides={"quantization_config": quant}))
    model = load_model(EngineConfig(model="dummy", load_format="dummy"), cfg, ParallelState(), "cpu", "float32",
                       quiet=True)
    down = model.model.layers[0].mlp.down_proj
    if quant["quant_method"] in ("awq", "gptq"):
        from vdeploy_kernels.reference_quant import dequantize_w4

        assert down.int4_group == 32
        w = dequantize_w4(down.qweight, down.scales, down.zeros, down.g_idx)
    else:
        w = down.weight.float() * down.weight_scale[:, None]
    assert 0.01 < float(w.std()) < 0.04
    runner = ReferenceRunner(model, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, num_layers=cfg.num_layers,
                             num_blocks=16, block_size=4)
    logits = runner.step(PROMPTS)
    assert all(torch.isfinite(v).all() for v in logits.values())
    assert not torch.allclose(logits["a"][-1], logits["b"][-1])
