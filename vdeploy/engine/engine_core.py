"""The engine loop: schedule -> execute -> update -> detokenize, single-threaded.

EngineCore owns the scheduler, KV-cache manager, tokenizer and executor. It is not thread-safe; AsyncEngine runs it
in one background thread for the server, LLM drives it directly for offline use.

With asynchronous scheduling (the default) one step is always in flight on the device: `step()` schedules and
launches step N+1, then waits for step N's tokens and turns them into outputs while the device runs N+1, so the
host's scheduling, batch building, detokenizing and output building overlap the GPU instead of idling it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.engine.block_pool import salted
from vdeploy.engine.detokenizer import IncrementalDetokenizer
from vdeploy.engine.generation_config import read_generation_settings
from vdeploy.engine.kv_cache_manager import KVCacheManager
from vdeploy.engine.outputs import EngineStats, OutputKind, RequestOutput, SchedulerOutput
from vdeploy.engine.request import Request, RequestStatus
from vdeploy.engine.request_group import RequestGroup, Sample, child_seed, request_output
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.scheduler import Scheduler
from vdeploy.engine.tokenizer import Tokenizer
from vdeploy.errors import ConfigError
from vdeploy.engine.step_handle import CompletedStep, StepHandle


def check_dp_attention(config: EngineConfig, model: ModelConfig) -> None:
    """DP attention serves DeepSeek MLA on one pipeline stage, without speculative decoding."""
    if model.kv_lora_rank == 0:
        raise ConfigError("--enable-dp-attention is for DeepSeek models (MLA attention)",
                          hint="other models split attention over --tp as usual")
    if config.parallel.pipeline_parallel_size > 1:
        raise ConfigError("--enable-dp-attention does not combine with --pp yet", hint="use --tp only")
    if config.speculative.enabled:
        raise ConfigError("--enable-dp-attention does not combine with speculative decoding yet")


class EngineCore:
    def __init__(
        self,
        config: EngineConfig,
        *,
        model_config: ModelConfig | None = None,
        executor: Any | None = None,
        tokenizer: Tokenizer | None = None,
    ):
        self.config = config
        self.model_config = model_config or ModelConfig.from_path(config.model)
        tok_dir = Path(config.tokenizer or config.model)
        if tokenizer is None and (tok_dir / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_dir(tok_dir)
        self.tokenizer = tokenizer  # None: token ids only (e.g. a bare config with dummy weights)
        generation = read_generation_settings(Path(config.model), self.model_config, tokenizer)
        self.generation_defaults = generation.defaults
        self.eos_token_ids = generation.eos_token_ids
        # the workers' sampler bans the same EOS ids under min_tokens as the scheduler stops on
        self.model_config = replace(self.model_config, eos_token_ids=self.eos_token_ids)
        self._check_max_model_len_within_model()
        if config.parallel.enable_dp_attention:
            check_dp_attention(config, self.model_config)
        if config.speculative.method not in (None, "ngram", "mtp"):
            raise ConfigError(f"speculative method {config.speculative.method!r} is not supported",
                              hint='use {"method": "ngram" or "mtp", "num_speculative_tokens": k}')
        if config.speculative.uses_mtp and self.model_config.num_nextn_predict_layers < 1:
            raise ConfigError(f"speculative method 'mtp' needs a checkpoint with a multi-token-prediction layer; "
                              f"{config.model} has none (num_nextn_predict_layers is 0)",
                              hint='DeepSeek-V3/R1 checkpoints have one; other models: {"method": "ngram", ...}')

        if executor is None:
            from vdeploy.executor import create_executor

            executor = create_executor(config, self.model_config)
        self.executor = executor
        try:
            block_size = executor.kv_cache_spec.block_size
            num_blocks = config.cache.num_gpu_blocks_override or executor.determine_num_kv_blocks()
            executor.initialize_kv_cache(num_blocks)
            self.max_model_len = self._resolve_max_model_len(num_blocks * block_size)
        except BaseException:
            executor.shutdown()
            raise
        parallel = config.parallel
        if parallel.enable_dp_attention and parallel.tensor_parallel_size > 1:
            from vdeploy.engine.dp_kv_cache import DPAttentionKVManager

            # each tensor rank's num_blocks hold only its own requests' latents
            self.kv_manager = DPAttentionKVManager(parallel.tensor_parallel_size, num_blocks, block_size,
                                                   config.cache.enable_prefix_caching)
        else:
            self.kv_manager = KVCacheManager(num_blocks, block_size, config.cache.enable_prefix_caching)
        self.scheduler = Scheduler(config.scheduler, self.kv_manager, self.max_model_len, config.speculative)
        self._groups: dict[str, RequestGroup] = {}
        self._sample_of: dict[str, tuple[RequestGroup, Sample]] = {}  # child request id -> its group and sample
        self._pending_outputs: list[RequestOutput] = []  # aborts, reported at the next step
        self._inflight: tuple[SchedulerOutput, StepHandle] | None = None  # launched, tokens not yet back
        # pipeline stages take their input from the previous stage, not from a token sampled on the device
        # (an executor with only a synchronous `execute` cannot resolve placeholders: it runs steps one by one)
        # (speculative steps emit an unknown number of tokens: the next step cannot be scheduled before them)
        self.async_scheduling = (config.scheduler.async_scheduling and hasattr(executor, "execute_async")
                                 and config.parallel.pipeline_parallel_size == 1 and not config.speculative.enabled)
        self._prompt_tokens_total = 0
        self._guided = None  # GuidedDecoder, created (xgrammar imported) by the first guided request
        self.loras = None  # LoRARegistry when LoRA is enabled
        if config.lora.enabled:
            from vdeploy.lora.registry import LoRARegistry

            try:
                self.loras = LoRARegistry(config.lora, self.model_config)
                for name, path in config.lora.lora_modules:
                    self.add_lora(name, path)
            except BaseException:
                executor.shutdown()
                raise

    def _guided_decoder(self):
        if self._guided is None:
            from vdeploy.engine.guided import GuidedDecoder

            self._guided = GuidedDecoder(self.tokenizer, self.model_config.vocab_size, self.eos_token_ids)
        return self._guided

    def _check_max_model_len_within_model(self) -> None:
        # Positions past max_position_embeddings have no rotary entry: the first such request would crash a rank
        # (and with it the server), so refuse the setting before anything loads.
        requested = self.config.scheduler.max_model_len
        model_limit = self.model_config.max_position_embeddings
        if requested is not None and requested > model_limit:
            raise ConfigError(
                f"max_model_len={requested} is longer than the model's context "
                f"(max_position_embeddings={model_limit})",
                hint=f"use --max-model-len {model_limit} or less",
            )

    def _resolve_max_model_len(self, kv_capacity_tokens: int) -> int:
        model_limit = self.model_config.max_position_embeddings
        requested = self.config.scheduler.max_model_len
        if requested is None:
            return min(model_limit, kv_capacity_tokens)
        if requested > kv_capacity_tokens:
            raise ConfigError(
                f"max_model_len={requested} needs more KV cache than available ({kv_capacity_tokens} tokens)",
                hint="lower --max-model-len, or give the KV cache more memory (gpu_memory_utilization / cpu kv bytes)",
            )
        return requested

    # ---- requests -----------------------------------------------------------------------------------------------
    def check_request(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Validation that needs no engine state (safe from any thread)."""
        params.validate()
        self.scheduler.check_prompt(len(prompt_token_ids))
        vocab = self.model_config.vocab_size
        if prompt_token_ids and not 0 <= min(prompt_token_ids) <= max(prompt_token_ids) < vocab:  # else a device fault
            bad = next(t for t in prompt_token_ids if not 0 <= t < vocab)
            raise ConfigError(f"prompt token id {bad} is outside the model's vocabulary [0, {vocab})",
                              hint="the tokenizer must match the model (config.json vocab_size)")
        if any(not 0 <= t < vocab for t in params.stop_token_ids):  # could never match: a mistake, said so
            raise ConfigError(f"stop_token_ids must be in [0, {vocab}), got {params.stop_token_ids}")
        if params.prompt_logprobs is not None and self.config.parallel.enable_dp_attention:
            raise ConfigError("prompt_logprobs is not supported with DP attention (--enable-dp-attention)",
                              hint="serve without DP attention to score prompts")

    # ---- LoRA adapters ------------------------------------------------------------------------------------------
    def add_lora(self, name: str, path: str) -> None:
        """Check the PEFT adapter at `path` and load it into a free slot on every rank (raises LoRAAdapterError)."""
        loras = self._lora_registry()
        adapter = loras.check(name, path)
        self._drain_inflight()  # the ranks answer this call in order: no step reply may be pending before it
        slot = loras.add(adapter)
        try:
            self.executor.load_lora(slot, adapter)
        except BaseException:
            loras.remove(name)
            raise

    def remove_lora(self, name: str) -> None:
        """Forget adapter `name`: new requests for it are refused; running ones finish on its slot."""
        self._lora_registry().remove(name)

    def list_loras(self) -> list[str]:
        return self.loras.names() if self.loras is not None else []

    def _lora_registry(self):
        if self.loras is None:
            raise ConfigError("LoRA is not enabled", hint="start the engine with --enable-lora or --lora-modules")
        return self.loras

    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams | None = None,
                    *, output_kind: OutputKind = OutputKind.CUMULATIVE, lora_name: str | None = None,
                    cache_salt: str | None = None) -> None:
        """output_kind: FINAL_ONLY reports the request once, finished (offline generation) — at a thousand running
        requests, building every step's outputs costs more host time than the GPU step; DELTA reports only what is
        new each step (no copy of the answer so far: long answers cost no more a step than short ones).
        lora_name: a loaded LoRA adapter to generate with (None: the base model). cache_salt: prefix-cache blocks are
        shared only with requests of the same salt (vLLM's; tenants cannot probe each other's prompts by timing)."""
        params = params or SamplingParams()
        self.check_request(prompt_token_ids, params)
        if request_id in self._groups:
            raise ConfigError(f"duplicate request id {request_id!r}")
        if lora_name is not None:
            self._lora_registry().adapter(lora_name)  # unknown names fail before anything is queued
        now = time.monotonic()
        group = RequestGroup(request_id, list(prompt_token_ids), [], now, output_kind)
        for index in range(params.n):
            # the prompt's logprobs once, by sample 0 (the others may take the prompt from the prefix cache)
            child_params = replace(params, n=1, seed=child_seed(params.seed, index),
                                   prompt_logprobs=params.prompt_logprobs if index == 0 else None)
            child_id = request_id if params.n == 1 else f"{request_id}#{index}"
            req = Request(
                child_id, list(prompt_token_ids), child_params, self.eos_token_ids, now, parent_id=request_id, index=index
            )
            group.samples.append(Sample(req, IncrementalDetokenizer(self.tokenizer, req.prompt_token_ids, child_params)))
            if lora_name is not None:
                req.lora_slot, req.cache_salt = self.loras.acquire(lora_name)
            if cache_salt:
                req.cache_salt = salted(req.cache_salt, cache_salt)
        added: list[Request] = []
        try:
            for sample in group.samples:
                if params.guided is not None:  # compiles (or finds cached) the grammar: a bad one fails here
                    self._guided_decoder().add(sample.request)
                self.scheduler.add_request(sample.request)
                added.append(sample.request)
        except BaseException:
            self.scheduler.abort_requests([r.request_id for r in added])
            if self._guided is not None:
                for sample in group.samples:
                    self._guided.remove(sample.request.request_id)
            self._release_loras(group)
            raise
        self._groups[request_id] = group
        for sample in group.samples:
            self._sample_of[sample.request.request_id] = (group, sample)
        self._prompt_tokens_total += len(prompt_token_ids)

    def abort_request(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            group = self._groups.get(rid)
            if group is None:
                continue
            self.scheduler.abort_requests([s.request.request_id for s in group.samples])
            if self._guided is not None:
                for s in group.samples:
                    self._guided.remove(s.request.request_id)
            out = self._group_output(group, [s for s in group.samples if not s.finished_reported])
            self._pending_outputs.append(out)

    def has_unfinished_requests(self) -> bool:
        return bool(self._groups) or bool(self._pending_outputs) or self._inflight is not None

    def check_idle(self) -> None:
        """The loops call this while nothing runs: a rank that died or stopped meanwhile fails the engine now
        (ExecutorError) rather than with the next request. Test doubles of the executor may lack the hook."""
        check = getattr(self.executor, "check_idle", None)
        if check is not None:
            check()

    # ---- the step -----------------------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        try:
            return self._step()
        except BaseException:
            # a step that raised (Ctrl-C inside it, a failed rank) may never have written the KV its requests now
            # count as computed, nor the steps queued behind it: every request they carried ends here, aborted
            # (its outputs come with the next step), whoever added it
            self._inflight = None
            self.abort_request(sorted({self._sample_of[rid][0].request_id for rid in self.scheduler.abandon_steps()
                                       if rid in self._sample_of}))
            raise

    def _step(self) -> list[RequestOutput]:
        outputs, self._pending_outputs = self._pending_outputs, []
        if self._inflight is None:
            self._inflight = self._launch()
            if self._inflight is None:
                return outputs
        # the device works on the step in flight: schedule and launch the next one before waiting for it
        launched = self._launch() if self._can_overlap() else None
        (sched_out, handle), self._inflight = self._inflight, launched
        return outputs + self._complete(sched_out, handle)

    def _drain_inflight(self) -> None:
        """Finish the step in flight now; its outputs are reported by the next step()."""
        if self._inflight is not None:
            (sched_out, handle), self._inflight = self._inflight, None
            self._pending_outputs += self._complete(sched_out, handle)

    def _complete(self, sched_out: SchedulerOutput, handle: StepHandle) -> list[RequestOutput]:
        runner_out = handle.result()
        updated = self.scheduler.update_from_output(sched_out, runner_out)
        if self._guided is not None and self._guided.num_live:
            for req in self._guided.advance(updated):
                if not req.is_finished:  # the grammar is complete: the answer is, too
                    self.scheduler.finish_request(req, RequestStatus.FINISHED_STOPPED)
            processed = self._process(updated)
            self._guided.forget_finished(updated)
            return processed
        return self._process(updated)

    def _launch(self) -> tuple[SchedulerOutput, StepHandle] | None:
        if not self.scheduler.has_unfinished_requests():
            return None
        sched_out = self.scheduler.schedule()
        if sched_out.is_empty:
            return None
        if self._guided is not None and self._guided.num_live:
            self._guided.fill(sched_out)  # every token before these rows is known (see needs_known_tokens)
        if self.async_scheduling:
            return sched_out, self.executor.execute_async(sched_out)
        return sched_out, CompletedStep(self.executor.execute(sched_out))

    def _can_overlap(self) -> bool:
        return self.async_scheduling and not self.scheduler.needs_known_tokens

    def _process(self, updated: list[Request]) -> list[RequestOutput]:
        changed: dict[str, tuple[RequestGroup, list[Sample]]] = {}
        for req in updated:
            group, sample = self._sample_of[req.request_id]
            new_tokens = req.output_token_ids[sample.num_tokens_detokenized :]
            sample.num_tokens_detokenized = req.num_output_tokens
            # finished as stopped before any stop string is looked for: an end id or a stop token ended it
            ended_by_token = req.status is RequestStatus.FINISHED_STOPPED and bool(new_tokens)
            stop_str = sample.detokenizer.update(new_tokens, req.num_output_tokens, ended_by_token)
            if stop_str is not None:
                # a speculative step may have emitted tokens past the one that completed the stop string
                past = sample.detokenizer.tokens_after_stop
                req.drop_output_tail(past)
                self.scheduler.num_generated_tokens -= past
                sample.num_tokens_detokenized = req.num_output_tokens
                if not req.is_finished:
                    self.scheduler.finish_request(req, RequestStatus.FINISHED_STOPPED, stop_str)
                else:  # the same token also hit a length limit: the stop string is the better reason
                    req.status, req.stop_reason = RequestStatus.FINISHED_STOPPED, stop_str
            if group.output_kind is not OutputKind.FINAL_ONLY:
                changed.setdefault(group.request_id, (group, []))[1].append(sample)
            elif req.is_finished and all(s.request.is_finished for s in group.samples):
                changed[group.request_id] = (group, group.samples)
        return [self._group_output(group, samples) for group, samples in changed.values()]

    def _group_output(self, group: RequestGroup, samples: list[Sample]) -> RequestOutput:
        out = request_output(group, samples)
        if out.finished:
            del self._groups[group.request_id]
            for s in group.samples:
                self._sample_of.pop(s.request.request_id, None)
            self._release_loras(group)
        return out

    def _release_loras(self, group: RequestGroup) -> None:
        for s in group.samples:
            if s.request.lora_slot >= 0:
                self.loras.release(s.request.lora_slot)
                s.request.lora_slot = -1  # released once, whichever path finishes the group

    # ---- state --------------------------------------------------------------------------------------------------
    def stats(self) -> EngineStats:
        kv = self.kv_manager
        return EngineStats(
            num_running=self.scheduler.num_running,
            num_waiting=self.scheduler.num_waiting,
            kv_usage=kv.usage,
            num_free_blocks=kv.num_free_blocks,
            num_total_blocks=kv.num_total_blocks,
            prefix_cache_queries=kv.prefix_stats.queries,
            prefix_cache_hits=kv.prefix_stats.hits,
            num_preemptions=self.scheduler.num_preemptions,
            prompt_tokens_total=self._prompt_tokens_total,
            generation_tokens_total=self.scheduler.num_generated_tokens,
            spec_draft_tokens_total=self.scheduler.num_draft_tokens,
            spec_accepted_tokens_total=self.scheduler.num_accepted_tokens,
            spec_steps_total=self.scheduler.num_spec_steps,
            spec_draft_seconds_total=self.scheduler.draft_seconds,
        )

    def shutdown(self) -> None:
        self._inflight = None
        self.executor.shutdown()
