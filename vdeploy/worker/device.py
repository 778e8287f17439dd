"""Which device and dtypes a rank runs with, resolved from EngineConfig's "auto" settings."""

from __future__ import annotations

import numpy as np
import torch

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.dtypes import ACTIVATION, lookup, torch_dtypes
from vdeploy.errors import ConfigError

TORCH_DTYPES = torch_dtypes()  # every dtype spelling -> torch dtype (vdeploy.dtypes)


def to_device(values: torch.Tensor | np.ndarray | list[int], device: torch.device) -> torch.Tensor:
    """Host values (a CPU tensor, an array, or a list of ids: int64) -> a tensor on `device`, without waiting for
    the device. A plain `.to(device)` synchronizes the stream first (torch's blocking copy): the host would idle
    until the GPU drained its queue instead of queueing what follows behind the step still running. The bytes go
    through pinned memory (torch's caching host allocator keeps the buffer until the copy is done)."""
    if not isinstance(values, torch.Tensor):
        array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=np.int64)
        values = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cpu":
        return values
    return values.pin_memory().to(device, non_blocking=True)


def resolve_device_type(engine_config: EngineConfig) -> str:
    """"cuda" or "cpu". auto = cuda when a GPU is visible."""
    if engine_config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if engine_config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is visible", hint="use --device cpu")
    if engine_config.device not in ("cuda", "cpu"):
        raise ConfigError(f"unknown device {engine_config.device!r}", hint="use auto, cuda or cpu")
    return engine_config.device


def resolve_device(engine_config: EngineConfig, local_rank: int = 0) -> torch.device:
    kind = resolve_device_type(engine_config)
    if kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"rank needs GPU {local_rank} but only {torch.cuda.device_count()} are visible",
                hint="lower --tp or check CUDA_VISIBLE_DEVICES",
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_dtype_name(engine_config: EngineConfig, model_config: ModelConfig) -> str:
    """Activation/weight dtype name. auto: the checkpoint's 16-bit dtype on CUDA (bfloat16 for fp32/fp8
    checkpoints), float32 on CPU, where 16-bit matmuls are slow and less exact."""
    name = engine_config.dtype
    if name == "auto":
        if resolve_device_type(engine_config) == "cpu":
            return "float32"
        return model_config.torch_dtype if model_config.torch_dtype in ("bfloat16", "float16") else "bfloat16"
    dtype = lookup(name)
    if dtype is None or dtype not in ACTIVATION:
        raise ConfigError(f"unsupported dtype {name!r}", hint="use auto, bfloat16, float16 or float32")
    return dtype.name


def resolve_kv_cache_dtype_name(engine_config: EngineConfig, model_config: ModelConfig) -> str:
    name = engine_config.cache.kv_cache_dtype
    if name == "auto":
        return resolve_dtype_name(engine_config, model_config)
    dtype = lookup(name)
    if dtype is None:
        raise ConfigError(f"unsupported KV cache dtype {name!r}", hint="use auto, bfloat16, float16 or fp8_e4m3")
    return dtype.name
