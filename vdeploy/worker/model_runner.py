"""One rank's model runner: loads its slice of the model, owns its KV cache, runs each step.

Per step, from the stateless SchedulerOutput: build the flat batch (input_batch), run the model (through a CUDA
graph for small all-decode steps), compute logits only for rows that sample, and sample on the driver (tensor
rank 0 of the last pipeline stage).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.engine.kv_cache_spec import KVCacheSpec
from vdeploy.engine.outputs import ModelRunnerOutput, SchedulerOutput, TokenLogprobs
from vdeploy.engine.step_handle import CompletedStep, StepHandle
from vdeploy.layers.forward_context import ForwardContext
from vdeploy.worker.device import TORCH_DTYPES, resolve_dtype_name, resolve_kv_cache_dtype_name
from vdeploy.worker.block_tables import BlockTables
from vdeploy.worker.input_batch import HostBatch, InputStager, as_decode_rows, build_host_batch
from vdeploy.worker.prompt_logprobs import compute_prompt_logprobs
from vdeploy.worker.sampler import HostSample, Sampler
from vdeploy.worker.spec_verify import DraftVerdict, verify_drafts

logger = logging.getLogger(__name__)


def kv_cache_spec_for(engine_config: EngineConfig, model_config: ModelConfig, pp_rank: int = 0) -> KVCacheSpec:
    """The KV-cache layout of one tensor-parallel rank of pipeline stage `pp_rank` (which caches its layers only)."""
    from vdeploy.models.pipeline_stage import pp_layer_range

    start, end = pp_layer_range(model_config.num_layers, pp_rank, engine_config.parallel.pipeline_parallel_size)
    mtp = engine_config.speculative.uses_mtp  # the MTP module's attention caches one layer more
    return KVCacheSpec.for_model(
        model_config,
        block_size=engine_config.cache.block_size,
        dtype=resolve_kv_cache_dtype_name(engine_config, model_config),
        tp_size=engine_config.parallel.tensor_parallel_size,
        num_layers=end - start + mtp,
    )


def max_model_len_of(engine_config: EngineConfig, model_config: ModelConfig) -> int:
    return engine_config.scheduler.max_model_len or model_config.max_position_embeddings


class ModelRunner:
    def __init__(
        self,
        engine_config: EngineConfig,
        model_config: ModelConfig,
        parallel: ParallelState,
        device: torch.device,
    ):
        self.engine_config = engine_config
        self.model_config = model_config
        parallel.dp_attention = engine_config.parallel.enable_dp_attention and parallel.tp_size > 1
        self.parallel = parallel
        self.device = device
        self.dtype = TORCH_DTYPES[resolve_dtype_name(engine_config, model_config)]
        self.kv_spec = kv_cache_spec_for(engine_config, model_config, parallel.pp_rank)
        self.block_size = self.kv_spec.block_size
        # block tables as wide as a multiple of 16 on CUDA: one Triton specialisation of their row stride
        self.block_table_width_multiple = 16 if device.type == "cuda" else 1
        sched = engine_config.scheduler
        self.stager = InputStager(device, sched.max_num_batched_tokens, sched.max_num_seqs)
        self.sampler = (
            Sampler(model_config.vocab_size, model_config.eos_token_ids, device, seed=engine_config.seed)
            if parallel.is_driver
            else None
        )
        self.model: torch.nn.Module | None = None
        self.kv_caches: list[torch.Tensor] = []
        self.graphs = None  # DecodeGraphRunner once captured (CUDA, not enforce_eager)
        # the last step's sampled tokens [N] on the device, and each sampling request's row in them
        self._last_sampled: torch.Tensor | None = None
        self._last_sampled_rows: dict[str, int] = {}
        self.block_tables = BlockTables()  # the running requests' tables, from the scheduler's diffs
        self.lora_batch = None  # LoRABatch when LoRA is enabled: this step's token -> adapter slot
        self.lora_layers: dict[str, torch.nn.Module] = {}
        self.drafter = None  # MTPDrafter once the model is loaded, with MTP speculative decoding

    # ---- setup -----------------------------------------------------------------------------------------------

    def load_model(self) -> None:
        from vdeploy.models.loader import load_model

        torch.manual_seed(self.engine_config.seed)
        self.model = load_model(self.engine_config, self.model_config, self.parallel, self.device, self.dtype)
        self.model.eval()
        lora = self.engine_config.lora
        if lora.enabled:  # before the KV cache is sized: the slots count like weights
            from vdeploy.lora.adapter import check_model_supports_lora
            from vdeploy.lora.layers import attach_lora

            check_model_supports_lora(self.model_config)
            self.lora_batch, self.lora_layers = attach_lora(
                self.model, lora.max_loras, lora.max_lora_rank, self.engine_config.scheduler.max_num_batched_tokens,
                self.dtype, self.device)

        spec = self.engine_config.speculative
        if spec.uses_mtp:
            from vdeploy.worker.mtp_drafter import MTPDrafter

            self.drafter = MTPDrafter(self.model, self.parallel, self.device, self.block_size,
                                      spec.num_speculative_tokens, self.model_config.max_position_embeddings)

    def load_lora(self, slot: int, adapter) -> None:
        """Write a checked adapter (vdeploy.lora.adapter.LoRAAdapter) into `slot` of this rank's layers."""
        from vdeploy.lora.layers import load_adapter

        load_adapter(self.lora_layers, slot, adapter)

    def determine_num_kv_blocks(self) -> int:
        from vdeploy.worker.memory_profile import determine_num_kv_blocks

        return determine_num_kv_blocks(self)

    def initialize_kv_cache(self, num_blocks: int) -> None:
        self.allocate_kv_cache(num_blocks)
        self.capture_cuda_graphs()
        if self.device.type == "cuda":
            from vdeploy.worker.kernel_warmup import warm_up_kernels

            warm_up_kernels(self)

    def allocate_kv_cache(self, num_blocks: int) -> None:
        kv_dtype = TORCH_DTYPES[self.kv_spec.dtype]
        shape = self.kv_spec.layer_shape(num_blocks)  # [K, NB, BS, Hk, D]
        # indexed by global layer: layers of earlier pipeline stages get empty tensors (never used on this stage)
        self.kv_caches = [torch.empty(0, dtype=kv_dtype, device=self.device)] * self._stage_first_layer() + [
            torch.zeros(shape, dtype=kv_dtype, device=self.device) for _ in range(self.kv_spec.num_layers)]

    def _stage_first_layer(self) -> int:
        from vdeploy.models.pipeline_stage import pp_layer_range

        return pp_layer_range(self.model_config.num_layers, self.parallel.pp_rank, self.parallel.pp_size)[0]

    def capture_cuda_graphs(self) -> None:
        """Decode CUDA graphs, after the KV cache exists (the graphs bake in its addresses)."""
        if (self.device.type != "cuda" or self.engine_config.enforce_eager or self.parallel.pp_size > 1
                or self.parallel.dp_attention):
            # pipeline stages run eagerly: a graph would have to capture the stage-to-stage transfers; so do DP
            # attention ranks: their step's shape depends on how many tokens every other rank has
            return
        from vdeploy.worker.cuda_graph import DecodeGraphRunner, graph_batch_sizes

        sched = self.engine_config.scheduler
        sizes = graph_batch_sizes(min(sched.max_num_seqs, sched.max_num_batched_tokens))
        runner = DecodeGraphRunner(
            model=self.model,
            kv_caches=self.kv_caches,
            device=self.device,
            batch_sizes=sizes,
            block_size=self.block_size,
            max_model_len=max_model_len_of(self.engine_config, self.model_config),
            lora_batch=self.lora_batch,
        )
        mtp = None
        if self.drafter is not None:  # the MTP passes replay graphs of their own over the same buckets
            from vdeploy.worker.mtp_graph import MTPGraphs

            mtp = MTPGraphs(self.model, self.model_config.hidden_size, self.dtype, self.device, runner.max_batch)
        if self.model.decode_row_pinning is not None:  # the graphs run decode rows only
            self.model.decode_row_pinning.active = True
        try:
            runner.capture(mtp)
        except Exception:
            if self.parallel.tp_size > 1:
                raise  # ranks must agree on graph vs eager; a rank that silently fell back would deadlock
            logger.exception("CUDA graph capture failed; running decode steps eagerly")
            return
        self.graphs = runner
        if mtp is not None:
            self.drafter.graphs = mtp

    # ---- one step ----------------------------------------------------------------------------------------------

    def execute(self, sched: SchedulerOutput) -> ModelRunnerOutput | None:
        """Run one step to the end. The driver (tensor rank 0 of the last stage) returns the sampled tokens;
        other ranks None."""
        return self.execute_async(sched).result()

    @torch.inference_mode()
    def execute_async(self, sched: SchedulerOutput) -> StepHandle:
        """Launch one step; the handle's result() waits for its tokens. Placeholder tokens in the step's input
        are the tokens this runner sampled in the step before (kept on the device)."""
        share = None
        if self.parallel.dp_attention and not sched.is_empty:
            from vdeploy.worker.dp_attention import share_of

            share = share_of(sched, self.parallel)
            sched = share.local  # this rank's requests (possibly none: it still joins every collective)
        tables = self.block_tables.apply(sched)
        if sched.is_empty and share is None:
            return CompletedStep(self._empty_output())
        hb = build_host_batch(sched, self.block_size, width_multiple=self.block_table_width_multiple, tables=tables)
        # verification of drafts in an all-decode batch: one decode row per token (decode path, CUDA graphs)
        rows = as_decode_rows(hb) if hb.spec_rows is not None else None
        self.stager.fence.before_write()
        # [T, D]; None before the last pipeline stage
        hidden = self._forward(rows or hb, self._placeholder_fill(hb), share.tokens if share else None)
        prompt_lp = None  # (DP attention refuses prompt logprobs)
        if hidden is not None and share is None and sched.scores_prompts:
            prompt_lp = compute_prompt_logprobs(self.model, hidden, sched.requests, hb.query_start_loc,
                                                driver=self.sampler is not None)
        sample_requests = hb.sample_requests if share is None else share.sample_requests
        if hidden is None or not sample_requests:
            self.stager.fence.after_copies()
            if self.drafter is not None and hidden is not None:  # its cache follows every computed position
                self.drafter.propose(hb, hidden, self.kv_caches, tables, None, None, rows)
            self._finish_step_without_sampling()
            out = self._empty_output()
            if out is not None:
                out.prompt_logprobs = prompt_lp
            return CompletedStep(out)
        logits_indices = self.stager.upload_indices(hb.logits_indices)  # [N]
        self.stager.fence.after_copies()
        spec_logits = None
        if share is None and hb.spec_rows is None:
            # an all-gather across the tensor ranks: every rank must call it, though only the driver samples
            logits = self.model.compute_logits(hidden[logits_indices])  # [N, V]
        elif share is None:  # draft-judging rows join the sampling rows: the head's weight is read once per step
            spec_rows = torch.from_numpy(hb.spec_rows).to(self.device, non_blocking=True)  # [S]
            both = self.model.compute_logits(hidden[torch.cat((logits_indices, spec_rows))])  # [N + S, V]
            logits, spec_logits = both.split([logits_indices.shape[0], spec_rows.shape[0]])
        else:  # every rank's sampling rows reach every rank; the driver's (replicated) head alone computes logits
            sample_hidden = share.samples.gather(hidden[logits_indices], self.parallel)  # [N_all, D]
            logits = self.model.compute_logits(sample_hidden) if self.sampler is not None else None
        req_ids = [r.req_id for r in sample_requests]
        if self.sampler is not None:
            sample = self.sampler.sample(logits, sample_requests)
            sampled = sample.sampled  # [N]
        else:
            sample, sampled = None, torch.empty(len(req_ids), dtype=torch.int64, device=self.device)
        # the next step's placeholders are these tokens, on every tensor rank (each embeds the same input)
        self.parallel.broadcast_from_first(sampled)
        self._last_sampled, self._last_sampled_rows = sampled, {rid: i for i, rid in enumerate(req_ids)}
        verdict = self._verify_drafts(hidden, hb, spec_logits) if hb.spec_rows is not None else None
        pending = _PendingTokens(req_ids, sample.copy_to_host(), verdict, prompt_lp) if sample is not None else None
        if self.drafter is not None:  # drafts need the step's tokens: this step ends here
            return CompletedStep(self._draft(hb, hidden, tables, pending, rows))
        if pending is None:
            self._finish_step_without_sampling()
            return CompletedStep(None)
        return pending

    def _draft(self, hb: HostBatch, hidden: torch.Tensor, tables: dict[str, list[int]],
               pending: _PendingTokens | None, rows: HostBatch | None) -> ModelRunnerOutput | None:
        """MTP drafts for the next step, from this step's hidden states and emitted tokens. Every rank runs the MTP
        module on the same inputs: which rows each request kept and the last token it emitted stay on the device
        (the driver's, broadcast), so the MTP pass is queued right behind the step and the host waits once, for
        the drafts."""
        timer = _DraftTimer(self.device)
        info = torch.zeros(2, len(hb.sample_requests), dtype=torch.int64, device=self.device)  # [2, N]
        if pending is not None:  # the driver: rows rejected, last token emitted
            info[1] = self._last_sampled
            if pending.verdict is not None:
                pending.verdict.fill_last_emitted(info, self._last_sampled)
        info = self.parallel.broadcast_from_first(info)
        drafts = self.drafter.propose(hb, hidden, self.kv_caches, tables, info[0], info[1], rows)
        out = pending.result() if pending is not None else None
        if out is not None:
            out.draft_token_ids = drafts
            out.draft_seconds = timer.seconds()
        return out

    def _verify_drafts(self, hidden: torch.Tensor, hb: HostBatch,
                       logits: torch.Tensor | None) -> DraftVerdict | None:
        """Speculative rows: the logits at t0, d1 … d(k-1) (computed with the sampling rows' when given; every
        tensor rank gathers them), judged on the driver."""
        if logits is None:
            rows = torch.from_numpy(hb.spec_rows).to(self.device, non_blocking=True)  # [S]
            logits = self.model.compute_logits(hidden[rows])  # [S, V]
        if self.sampler is None:
            return None
        requests = [hb.sample_requests[j] for j in hb.spec_samples]
        drafts = [r.token_ids[-r.num_draft_tokens:] for r in requests]
        accepted, replacement = verify_drafts(self.sampler, logits, requests, drafts)
        return DraftVerdict(hb.spec_samples, drafts, accepted, replacement)

    def _empty_output(self) -> ModelRunnerOutput | None:
        return ModelRunnerOutput(req_ids=[], sampled_token_ids=[]) if self.sampler else None

    def _placeholder_fill(self, hb: HostBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(token rows [P], their tokens [P]) on the device: the previous step's samples for this step's
        placeholders."""
        if hb.placeholder_rows is None:
            return None
        rows_of = self._last_sampled_rows
        try:
            src = [rows_of[rid] for rid in hb.placeholder_req_ids]
        except KeyError as e:
            raise RuntimeError(f"request {e.args[0]} has a placeholder token but sampled nothing last step") from None
        dst_rows, src_rows = self.stager.upload_placeholders(hb.placeholder_rows, np.asarray(src, dtype=np.int64))
        return dst_rows, self._last_sampled[src_rows]

    def _forward(self, hb: HostBatch, fill: tuple[torch.Tensor, torch.Tensor] | None, dp=None) -> torch.Tensor:
        if self.graphs is not None and self.graphs.can_run(hb):
            return self.graphs.run(hb, fill)
        batch = self.stager.stage(hb, self.block_size)
        if self.model.decode_row_pinning is not None:  # speculation: decode rows sum as one-row steps do
            self.model.decode_row_pinning.active = hb.is_pure_decode
        if self.lora_batch is not None:
            self.lora_batch.set_eager(hb.token_lora_slots if hb.token_lora_slots is not None
                                      else np.full(0, -1, dtype=np.int32))
        if fill is not None:
            batch.input_ids.index_copy_(0, *fill)
        ctx = ForwardContext(attn=batch.attn, kv_caches=self.kv_caches, dp=dp)
        if self.parallel.pp_size > 1:
            from vdeploy.models.pipeline_stage import forward_stage

            return forward_stage(self.model, self.parallel, batch.input_ids, batch.positions, ctx,
                                 self.model_config.hidden_size, self.dtype)
        return self.model(batch.input_ids, batch.positions, ctx)

    def _finish_step_without_sampling(self) -> None:
        # Rank 0's sampled-token fetch is the step's sync; ranks without it sync here so the pinned staging
        # buffers are free to be rewritten next step.
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def shutdown(self) -> None:
        # everything that holds device memory: the MTP drafter holds the model, its graphs and (through them) the
        # decode graphs' pool and the KV cache, so it goes too
        self._last_sampled = None
        self.graphs = None
        self.drafter = None
        self.kv_caches = []
        self.model = None


@dataclass
class _PendingTokens:
    req_ids: list[str]
    host: HostSample
    verdict: DraftVerdict | None = None
    prompt_logprobs: dict[str, list[TokenLogprobs]] | None = None

    def result(self) -> ModelRunnerOutput:
        out = self.host.wait()
        sampled, emitted = out.sampled_token_ids, None
        if self.verdict is not None:
            emitted = self.verdict.emitted(sampled, len(sampled))
            sampled = [tokens[0] if tokens else t for tokens, t in zip(emitted, sampled)]
        return ModelRunnerOutput(req_ids=self.req_ids, sampled_token_ids=sampled, logprobs=out.logprobs,
                                 accepted_token_ids=emitted, prompt_logprobs=self.prompt_logprobs)


class _DraftTimer:
    """Time spent drafting: device time from here to the drafts on a GPU (the host no longer waits for the step's
    tokens first, so a host clock would count the step too); host time on a CPU."""

    def __init__(self, device: torch.device):
        self.events = None
        if device.type == "cuda":
            self.events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self.events[0].record()
        self.start = time.perf_counter()

    def seconds(self) -> float:
        """After the drafts reached the host (everything before the end event has run)."""
        if self.events is None:
            return time.perf_counter() - self.start
        self.events[1].record()
        self.events[1].synchronize()
        return self.events[0].elapsed_time(self.events[1]) / 1e3
