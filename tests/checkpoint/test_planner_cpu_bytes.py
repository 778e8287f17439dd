"""The memory planner counts the weights as each scheme holds them once loaded on the target device: on the CPU,
DeepSeek block FP8 is dequantized to the model dtype while compressed-tensors W8A8 (FP8 or INT8) stays 8-bit (the
torch twin multiplies it). `env check --model` on a CPU host plans exactly the bytes the real loader allocates.
Checkpoints are bf16 models packed by the tests (fp8_testlib, quant_testlib)."""

from __future__ import annotations

import pytest
import torch

from tests.checkpoint.fp8_testlib import block_fp8_config, block_fp8_pack, tiny_llama, write_checkpoint
from tests.models.quant_testlib import w8a8_config, w8a8_pack
from vdeploy.checkpoint.planner import plan_memory
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed import ParallelState
from vdeploy.env.fit import check_model_fit
from vdeploy.env.hardware import Hardware
from vdeploy.env.host import HostInfo
from vdeploy.models.loader import load_model

GIB = 1 << 30
SHAPE = dict(hidden=256, heads=4, kv_heads=2, head_dim=64, intermediate=512)
SCHEMES = {  # name -> (quantization_config, packer)
    "block_fp8": (block_fp8_config((128, 128)), lambda w: block_fp8_pack(w, (128, 128))),
    "w8a8_fp8": (w8a8_config("float", "channel"), lambda w: w8a8_pack(w, "float", "channel")),
    "w8a8_int8": (w8a8_config("int", "channel"), lambda w: w8a8_pack(w, "int", "channel")),
    "bf16": (None, None),
}


@pytest.fixture(scope="module", params=list(SCHEMES))
def checkpoint(request, tmp_path_factory):
    quant, pack = SCHEMES[request.param]
    path = tmp_path_factory.mktemp(request.param) / "m"
    write_checkpoint(tiny_llama(**SHAPE), path, quant, pack or (lambda w: ({"weight": w.to(torch.bfloat16)}, w)))
    return request.param, path


def _cpu_host() -> tuple[Hardware, HostInfo]:
    return Hardware(gpus=[]), HostInfo(os="Linux", cpu_count=2, memory_total=64 * GIB, memory_available=60 * GIB,
                                       shm_total=None, model_dir="/tmp", disk_free=None)


def test_env_check_on_a_cpu_host_plans_the_bytes_the_loader_allocates(checkpoint):
    name, path = checkpoint
    cfg = ModelConfig.from_path(path)
    model = load_model(EngineConfig(model=str(path)), cfg, ParallelState(), "cpu", "auto", quiet=True)
    _, report = check_model_fit(str(path), *_cpu_host(), tp=1)
    assert report.device == "cpu"
    assert report.weight_bytes_per_gpu == model.load_stats.weight_bytes, name
    kept_8bit = {str(m.weight.dtype) for n, m in model.named_modules() if n.endswith("qkv_proj")}
    assert kept_8bit == {"torch.bfloat16" if name in ("block_fp8", "bf16") else
                         "torch.float8_e4m3fn" if name == "w8a8_fp8" else "torch.int8"}


def test_each_device_counts_what_it_holds(checkpoint):
    name, path = checkpoint
    cfg = ModelConfig.from_path(path)

    def planned(device: str, fp8_tensor_cores: bool) -> int:
        return plan_memory(cfg, tp=1, gpu_memory_bytes=80 * GIB, fp8_tensor_cores=fp8_tensor_cores,
                           device=device).weight_bytes_per_gpu

    cpu, hopper, ampere = planned("cpu", False), planned("cuda", True), planned("cuda", False)
    if name == "block_fp8":  # FP8 kept only on FP8 tensor cores; dequantized on the CPU and on an A100
        assert cpu == ampere > hopper
    elif name == "w8a8_fp8":  # dequantized only on a GPU without FP8 tensor cores
        assert cpu == hopper < ampere
    else:
        assert cpu == hopper == ampere
