"""How big each benchmark runs: `full` (the issue's workloads), `quick` (same shapes, fewer requests and repeats,
for a time-boxed device call), `tiny` (tiny models on CPU: the whole suite end to end in well under a minute)."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.engine.serving import ServingPlan
from benchmarks.engine.throughput import ThroughputPlan

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Scale:
    name: str
    copy_bytes: int
    matmul_n: int
    repeats_hw: int
    repeats: int  # decode and prefill measurements (median)
    decode_prompt_len: int
    decode_output_len: int
    prefill_prompts: int
    prefill_len: int
    throughput: ThroughputPlan
    serving: ServingPlan


SCALES = {
    "full": Scale(
        name="full", copy_bytes=2 * GIB, matmul_n=8192, repeats_hw=10, repeats=3,
        decode_prompt_len=128, decode_output_len=512, prefill_prompts=8, prefill_len=4096,
        throughput=ThroughputPlan(time_limit_s=240.0),
        serving=ServingPlan(),
    ),
    "quick": Scale(
        name="quick", copy_bytes=2 * GIB, matmul_n=8192, repeats_hw=5, repeats=2,
        decode_prompt_len=128, decode_output_len=512, prefill_prompts=8, prefill_len=4096,
        # 256 requests keep the batch full (max_num_seqs 256) like the 1000-request run, in a quarter of the time
        throughput=ThroughputPlan(fixed_requests=256, nano_requests=128, hf_output_len=128, time_limit_s=90.0),
        serving=ServingPlan(output_len=128, prompts_per_slot=2, min_prompts=4),
    ),
    "tiny": Scale(
        name="tiny", copy_bytes=64 * MIB, matmul_n=512, repeats_hw=3, repeats=1,
        decode_prompt_len=16, decode_output_len=24, prefill_prompts=2, prefill_len=64,
        throughput=ThroughputPlan(fixed_requests=8, fixed_input_len=32, fixed_output_len=16, nano_requests=8,
                                  nano_low=8, nano_high=32, hf_requests=4, hf_input_len=32, hf_output_len=8,
                                  hf_batch_size=4, time_limit_s=60.0),
        serving=ServingPlan(input_len=32, output_len=8, prompts_per_slot=1, min_prompts=2, startup_timeout_s=180.0,
                            request_timeout_s=120.0),
    ),
}
