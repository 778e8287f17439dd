"""Quantized checkpoints on a real GPU (skipped elsewhere; run with TRITON_INTERPRET=0, e.g. run_device.sh tests):
the tiny AWQ / GPTQ act-order / INT8 / FP8 W8A8 checkpoints of the CPU tests, loaded on CUDA in bf16, give the same
logits through the Triton kernels as through the torch twins, and the engine with CUDA graphs follows eager mode."""

from __future__ import annotations

import os

import pytest
import torch

from tests.models.quant_testlib import awq_pack, gptq_pack, tiny_hf_model, w8a8_config, w8a8_pack, write_quantized
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.models.loader import load_model
from vdeploy.testing.reference_runner import ReferenceRunner

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                       reason="needs a CUDA GPU with compiled Triton"),
]
GROUP = 32
PROMPTS = {"a": [1, 2, 3, 4, 5, 6, 7, 9, 30], "b": [200, 201, 17]}
FORMATS = {
    "awq": ({"quant_method": "awq", "bits": 4, "group_size": GROUP, "version": "gemm"},
            lambda prefix, w: awq_pack(w, GROUP)),
    "gptq_actorder": ({"quant_method": "gptq", "bits": 4, "group_size": GROUP, "desc_act": True, "sym": True},
                      lambda prefix, w: gptq_pack(w, GROUP, sym=True, v1=True,
                                                  perm=torch.randperm(w.shape[1],
                                                                      generator=torch.Generator().manual_seed(
                                                                          w.shape[1])))),
    "int8": (w8a8_config("int", "channel"), lambda prefix, w: w8a8_pack(w, "int", "channel")),
    "fp8": (w8a8_config("float", "tensor"), lambda prefix, w: w8a8_pack(w, "float", "tensor")),
}


@pytest.fixture(scope="module", params=list(FORMATS))
def checkpoint(request, tmp_path_factory):
    if request.param == "fp8" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 W8A8 kernels need sm89+ (dequantized to bf16 elsewhere)")
    quant, pack = FORMATS[request.param]
    path = tmp_path_factory.mktemp(request.param)
    with torch.no_grad():
        write_quantized(tiny_hf_model("qwen2"), path, quant, pack)
    return path


def _logits(path) -> dict[str, torch.Tensor]:
    cfg = ModelConfig.from_path(path)
    model = load_model(EngineConfig(model=str(path)), cfg, ParallelState(), "cuda", "bfloat16", quiet=True)
    runner = ReferenceRunner(model, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, num_layers=cfg.num_layers,
                             num_blocks=16, block_size=16)
    first = runner.step(PROMPTS)
    return {**first, **{k + "+1": v for k, v in runner.step({k: [5] for k in PROMPTS}).items()}}


def test_triton_kernels_match_the_twins_inside_the_model(checkpoint, monkeypatch):
    from vdeploy.layers import ops

    kernels = _logits(checkpoint)
    monkeypatch.setattr(ops, "_use_triton", lambda x: False)  # the same model through the torch twins
    twins = _logits(checkpoint)
    for key in kernels:
        err = (kernels[key] - twins[key]).norm() / twins[key].norm()
        assert err < 2e-2, (key, float(err))


def test_engine_with_cuda_graphs_follows_eager(checkpoint):
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.testing.greedy_agreement import greedy_agreement

    params = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, logprobs=5)
    prompts = [[(31 * i + 7 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([9, 37, 21, 5])]

    def run(**kw):
        with LLM(str(checkpoint), dtype="bfloat16", device="cuda", gpu_memory_utilization=0.3, **kw) as llm:
            return [o.outputs[0] for o in llm.generate(prompts, params)]

    agreement = greedy_agreement(run(enforce_eager=True), run(), near_tie=0.05)
    assert agreement.ok, agreement.divergences
