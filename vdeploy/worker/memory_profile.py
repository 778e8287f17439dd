"""How many KV blocks one rank can hold.

GPU: run a warm-up step at the largest batch the scheduler can form (max_num_batched_tokens tokens spread over
max_num_seqs requests, every one sampling with top-k/top-p/logprobs: the sampler's worst case), then
    blocks = (total * gpu_memory_utilization - peak usage) / bytes per block,
where peak usage = torch's peak allocation + memory outside torch's allocator (CUDA context, NCCL buffers)
+ a reserve for the decode CUDA graphs. The graphs are captured later (after the KV cache, whose addresses they
bake in) into a private memory pool that eager steps cannot reuse, so their cost is measured up front: one eager
decode forward at the largest graph batch, whose activation peak is what the shared pool will hold.
CPU: a byte budget (CacheConfig.cpu_kv_cache_bytes). CacheConfig.num_gpu_blocks_override wins everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import DoesNotFitError

logger = logging.getLogger(__name__)


@dataclass
class MemoryProfile:
    total_bytes: int
    peak_torch_bytes: int
    non_torch_bytes: int
    graph_reserve_bytes: int
    kv_budget_bytes: int
    num_blocks: int


def warmup_batch(max_num_batched_tokens: int, max_num_seqs: int, max_model_len: int, vocab_size: int,
                 block_size: int) -> SchedulerOutput:
    """The largest step: every request's KV slots point at block 0 of a one-block scratch cache."""
    num_seqs = max(1, min(max_num_seqs, max_num_batched_tokens))
    base, extra = divmod(max_num_batched_tokens, num_seqs)
    params = SamplingParams(temperature=0.7, top_k=50, top_p=0.9, logprobs=20, max_tokens=None)
    requests = []
    for i in range(num_seqs):
        n = min(base + (1 if i < extra else 0), max_model_len)
        if n == 0:
            continue
        token_ids = [(7 * i + j) % vocab_size for j in range(n)]
        requests.append(
            ScheduledRequest(
                req_id=f"warmup-{i}",
                token_ids=token_ids,
                start_pos=0,
                block_ids=[0] * (-(-n // block_size)),
                sample=True,
                sampling_params=params,
                num_prompt_tokens=n,
            )
        )
    return SchedulerOutput(requests=requests, num_scheduled_tokens=sum(len(r.token_ids) for r in requests))


def decode_batch(num_reqs: int) -> SchedulerOutput:
    """num_reqs one-token decodes in block 0 of the scratch cache, not sampling (graphs hold no logits)."""
    # token 0 for every row: a distinct id per row would run past a small vocabulary at 512 rows
    requests = [ScheduledRequest(f"decode-{i}", [0], 0, [0], sample=False) for i in range(num_reqs)]
    return SchedulerOutput(requests=requests, num_scheduled_tokens=num_reqs)


def graph_reserve_bytes(runner) -> int:
    """Activation peak of one eager decode forward at the largest CUDA-graph batch (0 when graphs are off)."""
    ec = runner.engine_config
    if ec.enforce_eager:
        return 0
    from vdeploy.worker.cuda_graph import graph_batch_sizes

    largest = graph_batch_sizes(min(ec.scheduler.max_num_seqs, ec.scheduler.max_num_batched_tokens))[-1]
    torch.cuda.synchronize(runner.device)
    torch.cuda.reset_peak_memory_stats(runner.device)
    base = torch.cuda.memory_allocated(runner.device)
    runner.execute(decode_batch(largest))
    torch.cuda.synchronize(runner.device)
    return torch.cuda.max_memory_allocated(runner.device) - base


def profile_gpu_kv_blocks(runner, gpu_memory_utilization: float) -> MemoryProfile:
    """Run the warm-up steps on `runner` (a ModelRunner with its model loaded, no KV cache yet)."""
    from vdeploy.worker.model_runner import max_model_len_of

    device = runner.device
    ec = runner.engine_config
    sched = warmup_batch(
        ec.scheduler.max_num_batched_tokens,
        ec.scheduler.max_num_seqs,
        max_model_len_of(ec, runner.model_config),
        runner.model_config.vocab_size,
        runner.block_size,
    )
    torch.cuda.empty_cache()
    runner.allocate_kv_cache(1)  # scratch cache: every warm-up slot maps into its single block
    try:
        graph_reserve = graph_reserve_bytes(runner)
        torch.cuda.reset_peak_memory_stats(device)
        runner.execute(sched)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        free, total = torch.cuda.mem_get_info(device)
        non_torch = max(total - free - torch.cuda.memory_reserved(device), 0)
    finally:
        runner.kv_caches = []
        torch.cuda.empty_cache()
    budget = int(total * gpu_memory_utilization) - peak - non_torch - graph_reserve
    num_blocks = max(budget, 0) // runner.kv_spec.bytes_per_block
    profile = MemoryProfile(total, peak, non_torch, graph_reserve, budget, num_blocks)
    logger.info(
        "memory: total %.2f GiB, peak torch %.2f GiB, outside torch %.2f GiB, CUDA graphs %.2f GiB "
        "-> KV %.2f GiB (%d blocks)",
        total / 2**30, peak / 2**30, non_torch / 2**30, graph_reserve / 2**30, max(budget, 0) / 2**30, num_blocks,
    )
    if num_blocks == 0:
        raise DoesNotFitError(
            f"no memory left for the KV cache on {device}: the weights and the warm-up steps use "
            f"{(peak + non_torch + graph_reserve) / 2**30:.2f} GiB of {total * gpu_memory_utilization / 2**30:.2f} GiB allowed",
            hint="raise --gpu-memory-utilization, lower --max-num-batched-tokens / --max-num-seqs, or use more GPUs (--tp)",
        )
    return profile


def determine_num_kv_blocks(runner) -> int:
    cache = runner.engine_config.cache
    if cache.num_gpu_blocks_override is not None:
        return cache.num_gpu_blocks_override
    if runner.device.type == "cuda":
        return profile_gpu_kv_blocks(runner, cache.gpu_memory_utilization).num_blocks
    num_blocks = cache.cpu_kv_cache_bytes // runner.kv_spec.bytes_per_block
    if num_blocks == 0:
        raise DoesNotFitError(
            f"the CPU KV budget of {cache.cpu_kv_cache_bytes} bytes holds no block of {runner.kv_spec.bytes_per_block}",
            hint="raise the CPU KV cache budget",
        )
    return num_blocks
