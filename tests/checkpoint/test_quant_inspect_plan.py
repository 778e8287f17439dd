"""`inspect-shards` and the planner on header-exact replicas of R1-Distill-Qwen-32B quantized as AWQ, GPTQ
(act-order) and compressed-tensors INT8 W8A8: the scheme, bits, group size and real bytes per parameter are reported,
the header checks accept the quantized tensors, parameters are counted as the dense model's, and the plans use the
stored bytes (4-bit: ~18 GiB on one GPU instead of ~61 GiB of bf16)."""

from __future__ import annotations

import json

import pytest

from vdeploy.checkpoint.inspect import inspect_checkpoint
from vdeploy.checkpoint.synthetic import REFERENCE_CONFIGS, write_sparse_replica

GIB = 1 << 30
INT8 = {"num_bits": 8, "type": "int", "symmetric": True}
SCHEMES = {
    "awq": ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
            "awq int4 W4A16, group 128, zero points", 4, 128, 18.0),
    "gptq": ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True, "sym": True},
             "gptq int4 W4A16, group 128, act-order, symmetric", 4, 128, 18.02),
    "w8a8": ({"quant_method": "compressed-tensors", "format": "int-quantized", "ignore": ["lm_head"],
              "config_groups": {"group_0": {"targets": ["Linear"],
                                            "weights": {**INT8, "strategy": "channel", "dynamic": False},
                                            "input_activations": {**INT8, "strategy": "token", "dynamic": True}}}},
             "compressed-tensors INT8 W8A8, per-channel weight scales", 8, -1, 31.98),
}
DENSE_PARAMS = 32_763_876_352  # R1-Distill-Qwen-32B


@pytest.fixture(scope="module", params=list(SCHEMES))
def report(request, tmp_path_factory):
    config = json.loads((REFERENCE_CONFIGS / "deepseek-r1-distill-qwen-32b.config.json").read_text())
    config.update(torch_dtype="float16", quantization_config=SCHEMES[request.param][0])
    root = write_sparse_replica(tmp_path_factory.mktemp(request.param) / "model", config)
    return request.param, inspect_checkpoint(root, gpu_memory_gb=[24, 48, 80])


def test_scheme_bits_group_and_bytes_per_parameter_are_reported(report):
    name, r = report
    _, describe, bits, group, _ = SCHEMES[name]
    a = r.architecture
    assert a.quant_scheme.startswith(describe) and (a.quant_bits, a.quant_group_size) == (bits, group)
    # 4-bit: half a byte plus an fp16 scale and a 4-bit zero per 128 weights; int8: one byte plus a float per row
    assert a.quant_bytes_per_param == pytest.approx(0.5 + 2.5 / 128 if bits == 4 else 1.0, abs=2e-3)
    assert describe in r.storage.weight_format and "bytes per quantized weight" in r.storage.weight_format
    assert not [f for f in r.findings if f.severity in ("error", "warning")]


def test_parameters_are_the_dense_models(report):
    _, r = report
    assert r.parameters.total == r.parameters.expected_total == DENSE_PARAMS


def test_plans_use_the_stored_bytes(report):
    name, r = report
    want_gib = SCHEMES[name][4]
    by_gpu = {round(ps.gpu_memory_bytes / GIB): {p.tp: p for p in ps.plans} for ps in r.plans}
    one_gpu = by_gpu[75][1]
    assert one_gpu.weight_bytes_per_gpu / GIB == pytest.approx(want_gib, abs=0.05)
    assert one_gpu.verdict == "fits"
    assert by_gpu[45][2].verdict == "fits"
