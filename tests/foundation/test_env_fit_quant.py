"""`env check --model` on AWQ / GPTQ / compressed-tensors checkpoints: the verdict uses the stored bytes and the
report says how the scheme runs on the card (the Triton kernel, dequantized, or the CPU twin)."""

from __future__ import annotations

import json

import pytest
from foundation_fakes import by_name, cpu_software, cuda_software, gpu_box, host, no_gpu
from foundation_reference_configs import REFERENCE_CONFIGS

from vdeploy.env.report import build_report

AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}


def _w8a8(kind: str) -> dict:
    args = {"num_bits": 8, "type": kind, "symmetric": True}
    return {"quant_method": "compressed-tensors", "format": f"{kind}-quantized", "ignore": ["lm_head"],
            "config_groups": {"g": {"targets": ["Linear"], "weights": {**args, "strategy": "channel"},
                                    "input_activations": {**args, "strategy": "token", "dynamic": True}}}}


@pytest.fixture
def model_dir(tmp_path):
    def write(quant: dict):
        path = tmp_path / quant["quant_method"]
        path.mkdir(exist_ok=True)
        config = {**REFERENCE_CONFIGS["deepseek-r1-distill-qwen-32b"], "quantization_config": quant}
        (path / "config.json").write_text(json.dumps(config))
        return str(path)

    return write


def test_awq_32b_fits_one_24gb_card_only_as_4_bit(model_dir):
    rtx4090 = gpu_box(1, "NVIDIA GeForce RTX 4090", 24564 << 20, (8, 9))
    report = build_report(rtx4090, cuda_software(), host(), model=model_dir(AWQ), tp=1)
    fit = report.fit
    assert fit.quant_path == "w4a16-triton-gemm" and fit.quant_scheme.startswith("awq int4 W4A16, group 128")
    assert 17.5 < fit.weight_bytes_per_gpu / 2**30 < 18.5  # bf16 would be ~61 GiB
    assert "runs as w4a16-triton-gemm" in by_name(report.checks)["model_fit"].message


@pytest.mark.parametrize("kind,sm,path", [("float", (9, 0), "w8a8-fp8-triton-gemm"),
                                          ("float", (8, 0), "dequantize-to-bf16"),
                                          ("int", (8, 0), "w8a8-int8-triton-gemm")])
def test_w8a8_path_depends_on_the_card(model_dir, kind, sm, path):
    box = gpu_box(2, "GPU", 81920 << 20, sm)
    report = build_report(box, cuda_software(), host(), model=model_dir(_w8a8(kind)), tp=2)
    assert report.fit.quant_path == path


def test_cpu_runs_the_twin(model_dir):
    report = build_report(no_gpu(), cpu_software(), host(), model=model_dir(AWQ))
    assert report.fit.quant_path == "torch-twin-on-cpu"
