"""Offline Python API: `vdeploy.LLM(path).generate(prompts, sampling_params)`.

    from vdeploy import LLM, SamplingParams
    llm = LLM()  # the demo model (SmolLM2-135M-Instruct)
    out = llm.chat([{"role": "user", "content": "What is the capital of France?"}], SamplingParams(temperature=0))
    print(out[0].outputs[0].text)
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from vdeploy.config import CacheConfig, EngineConfig, LoRAConfig, ParallelConfig, SchedulerConfig
from vdeploy.engine.beam_search import BeamSearchParams, BeamSearchSequence
from vdeploy.engine.engine_core import EngineCore
from vdeploy.engine.offline_batch import BatchRequest, run_batch
from vdeploy.engine.outputs import RequestOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.tokenizer import Tokenizer
from vdeploy.errors import ConfigError
from vdeploy.lora.request import LoRARequest, parse_lora_modules
from vdeploy.speculative_config import SPECULATIVE_CONFIG_KEYS, speculative_settings

Prompt = str | list[int]
Message = dict[str, Any]

# keyword argument -> EngineConfig field path ("cache.block_size"); a few vLLM spellings map onto ours
_ALIASES = {"tensor_parallel_size": "parallel.tensor_parallel_size", "cpu_kv_bytes": "cache.cpu_kv_cache_bytes"}


def _engine_field_paths() -> dict[str, str]:
    sections = ("model", "cache", "scheduler", "parallel", "speculative", "lora")
    paths = {f.name: f.name for f in fields(EngineConfig) if f.name not in sections}
    for section, cls in (("cache", CacheConfig), ("scheduler", SchedulerConfig), ("parallel", ParallelConfig),
                         ("lora", LoRAConfig)):
        paths.update({f.name: f"{section}.{f.name}" for f in fields(cls)})
    paths.update({name: f"speculative.{key}" for key, name in SPECULATIVE_CONFIG_KEYS.items()})
    paths.update(_ALIASES)
    return paths


def build_engine_config(model: str, **kwargs: Any) -> EngineConfig:
    """EngineConfig from flat keyword arguments (dtype=..., block_size=..., max_model_len=...); vLLM's
    speculative_config={"method": "ngram", "num_speculative_tokens": k, "prompt_lookup_max": n} is accepted too."""
    modules = kwargs.pop("lora_modules", None)
    if modules:  # {name: path} or [(name, path)] or ["name=path"]
        kwargs["lora_modules"] = parse_lora_modules(modules.items() if isinstance(modules, dict) else modules)
    kwargs.update(speculative_settings(kwargs.pop("speculative_config", None)))
    paths = _engine_field_paths()
    unknown = sorted(set(kwargs) - set(paths))
    if unknown:
        raise ConfigError(f"unknown engine option(s): {', '.join(unknown)}", hint="valid: " + ", ".join(sorted(paths)))
    return EngineConfig(model=model).with_overrides(**{paths[k]: v for k, v in kwargs.items()})


class LLM:
    def __init__(self, model: str | Path | None = None, *, chat_template: str | Path | None = None, **kwargs: Any):
        if model is None:
            from vdeploy.models.demo import ensure_demo_model

            model = ensure_demo_model()
        self._init_core(build_engine_config(str(model), **kwargs), chat_template)

    @classmethod
    def from_engine_config(cls, config: EngineConfig, chat_template: str | Path | None = None) -> LLM:
        llm = cls.__new__(cls)
        llm._init_core(config, chat_template)
        return llm

    def _init_core(self, config: EngineConfig, chat_template: str | Path | None) -> None:
        self.engine_config = config
        tokenizer = None
        if chat_template is not None:
            tokenizer = Tokenizer.from_dir(config.tokenizer or config.model, chat_template_file=chat_template)
        self.core = EngineCore(config, tokenizer=tokenizer)
        self._ids = itertools.count()
        # release executor ranks even if the caller forgets close()
        self._finalizer = weakref.finalize(self, self.core.shutdown)

    @property
    def tokenizer(self) -> Tokenizer | None:
        return self.core.tokenizer

    @property
    def max_model_len(self) -> int:
        return self.core.max_model_len

    def default_sampling_params(self) -> SamplingParams:
        """SamplingParams carrying the model's generation_config.json defaults (temperature, top_p, ...)."""
        return SamplingParams(**self.core.generation_defaults)

    # ---- generation ---------------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        lora_request: LoRARequest | Sequence[LoRARequest | None] | None = None,
    ) -> list[RequestOutput]:
        """Run every prompt to completion with continuous batching; outputs in prompt order, text complete. Any
        number of prompts: they enter the engine's waiting queue as it drains (vdeploy.engine.offline_batch).
        lora_request: one adapter for every prompt, or one (or None: the base model) per prompt; adapters not yet
        loaded are loaded first (LLM(..., enable_lora=True))."""
        self._check_open()
        token_prompts = self._to_token_prompts(prompts)
        params = self._align_params(sampling_params, len(token_prompts))
        loras = self._lora_names(lora_request, len(token_prompts))
        return run_batch(self.core, [BatchRequest(self._next_request_id(), prompt, p, lora_name)
                                     for prompt, p, lora_name in zip(token_prompts, params, loras)])

    def beam_search(self, prompts: Prompt | Sequence[Prompt], params: BeamSearchParams) -> list[list[BeamSearchSequence]]:
        """Beam search as transformers' generate(num_beams=...) does it; per prompt, the finished sequences best
        first (generated token ids and score). Beams end where generate() would end the prompt's request (max_tokens,
        or prompt + output reaching max_model_len)."""
        from vdeploy.engine.beam_search import beam_search

        self._check_open()
        return beam_search(self.core, self._to_token_prompts(prompts), params, self.core.eos_token_ids)

    def generate_stream(self, prompt: Prompt, sampling_params: SamplingParams | None = None,
                        lora_name: str | None = None) -> Iterator[RequestOutput]:
        """One prompt, yielding delta outputs step by step (the last has finished=True); lora_name: a loaded
        adapter (None: the base model)."""
        self._check_open()
        (token_prompt,) = self._to_token_prompts([prompt])
        rid = self._add(token_prompt, sampling_params or self.default_sampling_params(), lora_name=lora_name)
        finished = False
        try:
            while not finished:
                for out in self.core.step():
                    if out.request_id == rid:
                        finished = out.finished
                        yield out
        except GeneratorExit:  # the caller stopped reading: abort, and let a step release the blocks now
            self.core.abort_request([rid])
            self.core.step()
            raise
        except BaseException:  # e.g. Ctrl-C inside a step: the request must not stay queued for the next call
            # host-side only, no further step: after a failed step (a dead or stuck rank) another step would only
            # replace the real error with a secondary one
            self.core.abort_request([rid])
            raise

    def chat(
        self,
        messages: list[Message] | list[list[Message]],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        """One conversation (a list of messages) or several; the model's chat template is applied, given `tools`
        (OpenAI's function definitions) and `chat_template_kwargs` (e.g. {"thinking": True}) as vLLM's LLM.chat."""
        from vdeploy.engine.tokenizer import TEMPLATE_VARIABLES

        extra = dict(chat_template_kwargs or {})
        if clash := sorted(set(extra) & TEMPLATE_VARIABLES):
            raise ConfigError(f"chat_template_kwargs may not set {', '.join(clash)}",
                              hint="pass messages, tools and add_generation_prompt as arguments")
        conversations = [messages] if messages and isinstance(messages[0], dict) else messages
        tokenizer = self._require_tokenizer()
        prompts = [tokenizer.encode_chat(conv, add_generation_prompt, tools=tools, **extra) for conv in conversations]
        return self.generate(prompts, sampling_params)

    def encode(self, text: str) -> list[int]:
        return self._require_tokenizer().encode(text)

    def encode_chat(self, messages: list[Message], add_generation_prompt: bool = True) -> list[int]:
        return self._require_tokenizer().encode_chat(messages, add_generation_prompt)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers ------------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self._finalizer.alive:  # close() has shut the engine down
            raise ConfigError("this LLM is closed", hint="create a new LLM to generate again")

    def _add(self, prompt: list[int], params: SamplingParams, lora_name: str | None = None) -> str:
        rid = self._next_request_id()
        self.core.add_request(rid, prompt, params, lora_name=lora_name)
        return rid

    def _next_request_id(self) -> str:
        return f"llm-{next(self._ids)}"

    def _lora_names(self, lora_request, n: int) -> list[str | None]:
        requests = [lora_request] * n if lora_request is None or isinstance(lora_request, LoRARequest) else list(
            lora_request)
        if len(requests) != n:
            raise ConfigError(f"{len(requests)} LoRA requests for {n} prompts")
        for request in {r for r in requests if r is not None}:
            if request.lora_name in self.core.list_loras():
                loaded = self.core.loras.adapter(request.lora_name).path
                if Path(request.lora_path).expanduser().resolve() != Path(loaded):
                    raise ConfigError(f"LoRA adapter {request.lora_name!r} is already loaded from {loaded}",
                                      hint="use another lora_name for another adapter")
            else:
                self.core.add_lora(request.lora_name, request.lora_path)
        return [r.lora_name if r is not None else None for r in requests]

    def _require_tokenizer(self) -> Tokenizer:
        if self.core.tokenizer is None:
            raise ConfigError(
                f"{self.engine_config.tokenizer or self.engine_config.model} has no tokenizer.json, so text cannot "
                "be encoded",
                hint="copy the model's tokenizer.json and tokenizer_config.json into that directory (or, in Python, "
                "pass LLM(..., tokenizer=DIR) or prompts as token ids)",
            )
        return self.core.tokenizer

    def _to_token_prompts(self, prompts: Prompt | Sequence[Prompt]) -> list[list[int]]:
        if isinstance(prompts, str) or (isinstance(prompts, (list, tuple)) and prompts and isinstance(prompts[0], int)):
            prompts = [prompts]  # one prompt, as text or token ids
        out = []
        for p in prompts:
            out.append(self.encode(p) if isinstance(p, str) else [int(t) for t in p])
        return out

    def _align_params(self, params: SamplingParams | Sequence[SamplingParams] | None, n: int) -> list[SamplingParams]:
        if params is None:
            return [self.default_sampling_params()] * n
        if isinstance(params, SamplingParams):
            return [params] * n
        if len(params) != n:
            raise ConfigError(f"{len(params)} sampling params for {n} prompts")
        return list(params)
