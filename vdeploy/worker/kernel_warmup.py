"""Compile the JIT kernel variants of eager (prefill / mixed) steps before the first request.

Triton compiles one binary per launch configuration *and* per specialisation of the integer arguments (a value of
1, a multiple of 16, anything else). Which variants a workload needs depends on the batch: the prefill launch
config follows the longest query (short / medium / long), and a mixed step hands the prefill kernel
`first_req = num_decodes`. Left to the first requests, each new variant stalls a step for a second or more; on the
H100, an offline run of 256 prompts lost several seconds of its measured time this way. So after the KV cache and
the decode graphs exist, a handful of synthetic steps walk through those variants once.

The synthetic requests write their keys/values into block 0 of the real cache and read them back; no request
owns any block yet, so nothing is disturbed. Every rank runs the same steps (collectives stay matched).
"""

from __future__ import annotations

import logging
import time

from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams

logger = logging.getLogger(__name__)

# query lengths that select each prefill launch config (<= 64, <= 128, longer) and decode counts that cover each
# specialisation of first_req (0 and 16: multiples of 16; 1; anything else)
WARMUP_QUERY_LENS = (8, 100, 300)
WARMUP_NUM_DECODES = (0, 1, 3, 16)
_DECODE_CONTEXT = 17  # decode rows attend over 17 cached tokens: a full block and one more


def warmup_steps(block_size: int, max_num_batched_tokens: int, max_num_seqs: int, max_model_len: int,
                 ) -> list[SchedulerOutput]:
    """The synthetic mixed steps (decodes first, then one prefill), clamped to the scheduler's limits."""
    greedy = SamplingParams(temperature=0.0, max_tokens=None)
    steps = []
    seen: set[tuple[int, int]] = set()
    for q_len in WARMUP_QUERY_LENS:
        for num_decodes in WARMUP_NUM_DECODES:
            nd = min(num_decodes, max_num_seqs - 1) if max_model_len > _DECODE_CONTEXT else 0
            q = min(q_len, max_num_batched_tokens - nd, max_model_len)
            if q < 1 or (q, nd) in seen:
                continue
            seen.add((q, nd))
            reqs = [
                ScheduledRequest(f"warmup-decode-{i}", [1], _DECODE_CONTEXT - 1,
                                 [0] * -(-_DECODE_CONTEXT // block_size), True, greedy, 1)
                for i in range(nd)
            ]
            reqs.append(ScheduledRequest("warmup-prefill", [1] * q, 0, [0] * -(-q // block_size), True, greedy))
            steps.append(SchedulerOutput(reqs, num_scheduled_tokens=nd + q))
    return steps


def warm_up_kernels(runner) -> float:
    """Run the synthetic steps on `runner` (KV cache allocated); returns the seconds spent."""
    from vdeploy.worker.model_runner import max_model_len_of

    sched = runner.engine_config.scheduler
    start = time.perf_counter()
    for step in warmup_steps(runner.block_size, sched.max_num_batched_tokens, sched.max_num_seqs,
                             max_model_len_of(runner.engine_config, runner.model_config)):
        runner.execute(step)
    elapsed = time.perf_counter() - start
    logger.info("kernel warm-up (eager prefill/mixed variants) took %.1f s", elapsed)
    return elapsed
