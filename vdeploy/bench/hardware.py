"""The ceilings of this device, measured in the same run as the benchmarks that are compared against them:
device-to-device copy bandwidth (bytes read + written per second) and dense matmul throughput, on random data."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Ceilings:
    device: str
    copy_bandwidth_bytes_per_s: float  # median over repeats; read + written
    copy_buffer_bytes: int
    copy_repeats: int
    matmul_flops_per_s: float  # median over repeats
    matmul_n: int  # an n x n x n product
    matmul_dtype: str
    matmul_repeats: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["copy_bandwidth_tb_per_s"] = round(self.copy_bandwidth_bytes_per_s / 1e12, 4)
        d["matmul_tflop_per_s"] = round(self.matmul_flops_per_s / 1e12, 3)
        return d


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], None], device: torch.device, repeats: int, inner: int) -> float:
    """Median wall time of `inner` back-to-back calls, after two warm-up calls; per call."""
    for _ in range(2):
        fn()
    _synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        _synchronize(device)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def device_ms(fn: Callable[[], Any], device: torch.device, iters: int) -> float:
    """Milliseconds per call of `iters` back-to-back calls after one warm-up: CUDA events on a GPU (no host gaps
    counted between launches), wall clock elsewhere."""
    fn()
    if device.type != "cuda":
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - start) * 1e3 / iters
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / iters


def median_call_ms(fn: Callable[[], Any], device: torch.device, reps: int, warmup_s: float = 0.05) -> float:
    """Median milliseconds of `reps` single calls, each timed alone (CUDA events on a GPU, wall clock elsewhere),
    after `warmup_s` seconds of untimed calls (the clocks ramp up first): what the kernel sweeps compare."""
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < warmup_s:
        fn()
    times = []
    for _ in range(reps):
        if device.type != "cuda":
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
            continue
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(device: torch.device, buffer_bytes: int, repeats: int = 10) -> float:
    """Bytes moved per second by a device-to-device copy of `buffer_bytes` (each byte read once, written once)."""
    src = torch.randint(0, 256, (buffer_bytes,), dtype=torch.uint8, device=device)  # [N]
    dst = torch.empty_like(src)
    seconds = _median_seconds(lambda: dst.copy_(src), device, repeats, inner=4)
    return 2 * buffer_bytes / seconds


def matmul_throughput(device: torch.device, n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    """FLOP/s of an n x n by n x n product (2 n^3 FLOPs) on random data."""
    a = torch.randn(n, n, device=device, dtype=torch.float32).to(dtype)  # [n, n]
    b = torch.randn(n, n, device=device, dtype=torch.float32).to(dtype)  # [n, n]
    out = torch.empty(n, n, device=device, dtype=dtype)  # [n, n]
    seconds = _median_seconds(lambda: torch.matmul(a, b, out=out), device, repeats, inner=4)
    return 2 * n**3 / seconds


def measure_ceilings(device: torch.device, *, copy_bytes: int, matmul_n: int, dtype: torch.dtype,
                     repeats: int = 10) -> Ceilings:
    bandwidth = copy_bandwidth(device, copy_bytes, repeats)
    flops = matmul_throughput(device, matmul_n, dtype, repeats)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Ceilings(
        device=str(device), copy_bandwidth_bytes_per_s=bandwidth, copy_buffer_bytes=copy_bytes, copy_repeats=repeats,
        matmul_flops_per_s=flops, matmul_n=matmul_n, matmul_dtype=str(dtype).removeprefix("torch."),
        matmul_repeats=repeats,
    )
