"""The engine's host work per decode step, without a device: EngineCore over an executor that builds the worker's
host batch (build_host_batch) and answers a token per sampling request at once. At large batches this host time is
the floor of a step's time even when it overlaps the GPU (asynchronous scheduling), so it is measured here, on any
machine, per running request.

    python3 benchmarks/engine/host_overhead.py --batch 256 1024 [--profile] [--streamed TOKENIZER_DIR]

--streamed: as `vdeploy serve`'s engine-core process runs: every request's output every step, detokenized with the
tokenizer in TOKENIZER_DIR (e.g. the demo model's), encoded into the StepOutputs frame the server receives.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from vdeploy.config import CacheConfig, EngineConfig, ModelConfig, SchedulerConfig
from vdeploy.engine.engine_core import EngineCore
from vdeploy.engine.kv_cache_spec import KVCacheSpec
from vdeploy.engine.outputs import ModelRunnerOutput, OutputKind, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.step_handle import CompletedStep
from vdeploy.worker.block_tables import BlockTables
from vdeploy.worker.input_batch import build_host_batch

MODEL = ModelConfig.from_dict({
    "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 4, "max_position_embeddings": 4096, "eos_token_id": 2})


class HostOnlyExecutor:
    def __init__(self, block_size: int, num_blocks: int):
        self.kv_cache_spec = KVCacheSpec("mha", 1, block_size, 1, 1, "float32")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.tables = BlockTables()

    def determine_num_kv_blocks(self) -> int:
        return self.num_blocks

    def initialize_kv_cache(self, num_blocks: int) -> None:
        pass

    def execute(self, sched: SchedulerOutput) -> ModelRunnerOutput:
        hb = build_host_batch(sched, self.block_size, width_multiple=16, tables=self.tables.apply(sched))
        ids = [r.req_id for r in hb.sample_requests]
        return ModelRunnerOutput(ids, [(hash(i) % 30000) + 3 for i in ids])

    def execute_async(self, sched: SchedulerOutput) -> CompletedStep:
        return CompletedStep(self.execute(sched))

    def shutdown(self) -> None:
        pass


def measure(batch: int, input_len: int, steps: int, profile: bool, streamed: str | None = None,
            output_len_before: int = 0) -> dict:
    block_size = 16
    blocks = batch * (-(-(input_len + output_len_before + steps + 256) // block_size)) + 16  # admission decodes too
    cfg = EngineConfig(model="/nonexistent", cache=CacheConfig(block_size=block_size),
                       scheduler=SchedulerConfig(max_num_seqs=batch, max_num_batched_tokens=16384))
    tokenizer = None
    if streamed:
        from vdeploy.engine import core_codec as wire
        from vdeploy.engine.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_dir(streamed)
        codec, encoder = wire.core_side_codec(), wire.OutputEncoder()
    core = EngineCore(cfg, model_config=MODEL, executor=HostOnlyExecutor(block_size, blocks), tokenizer=tokenizer)
    params = SamplingParams(temperature=0, max_tokens=output_len_before + steps + 200, ignore_eos=True)
    for i in range(batch):
        core.add_request(f"r{i}", [(i * 7 + j) % 30000 + 3 for j in range(input_len)], params,
                         output_kind=OutputKind.DELTA if streamed else OutputKind.FINAL_ONLY)
    while core.scheduler.num_waiting or any(r.num_computed_tokens < r.num_prompt_tokens for r in core.scheduler.running):
        core.step()
    assert core.scheduler.num_running == batch
    for _ in range(output_len_before):  # outputs this long already (long answers: R1's reasoning)
        outputs = core.step()
        if streamed:
            codec.encode(wire.StepOutputs([encoder.encode(o) for o in outputs], [], core.stats(), 0))
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(steps):
        outputs = core.step()
        if streamed:  # what the engine-core process sends after each step
            frame = codec.encode(wire.StepOutputs([encoder.encode(o) for o in outputs], [], core.stats(), 0))
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    per_step = (time.perf_counter() - t0) / steps
    return {"batch": batch, "streamed": bool(streamed), "ms_per_step": round(per_step * 1e3, 3),
            "us_per_request": round(per_step / batch * 1e6, 2), **({"frame_bytes": len(frame)} if streamed else {})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--input-len", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--streamed", metavar="TOKENIZER_DIR", default=None)
    ap.add_argument("--output-len-before", type=int, default=0,
                    help="decode steps before the measured ones (how long the outputs already are)")
    args = ap.parse_args()
    for b in args.batch:
        print(measure(b, args.input_len, args.steps, args.profile, args.streamed, args.output_len_before), flush=True)


if __name__ == "__main__":
    main()
