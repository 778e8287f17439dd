"""Beam search on /v1/completions (vLLM's `use_beam_search` extension): the offline search (engine/beam_search.py)
driven by the server's engine, one one-token request per live beam and step, so it shares the batch, the prefix
cache and the KV budget with every other request.

Request: use_beam_search=true, n = beam width (and the number of choices per prompt), max_tokens, length_penalty,
early_stopping, ignore_eos. Sampling fields do not apply. Not streamed: a beam's text is only known at the end."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

from vdeploy.engine.beam_search import BeamSearchParams, beam_search_async, next_token_params
from vdeploy.errors import ConfigError
from vdeploy.server.errors import invalid_param
from vdeploy.server.metrics import RequestTiming
from vdeploy.server.protocol import CompletionChoice, CompletionRequest, CompletionResponse, Usage
from vdeploy.server.serving_base import ServingContext


def check_beam_request(req: CompletionRequest) -> None:
    if req.stream:
        raise invalid_param("use_beam_search cannot be streamed", "stream", code="unsupported_value")
    for name in ("logprobs", "guided_json", "guided_regex", "guided_choice", "guided_grammar", "response_format"):
        if getattr(req, name, None) is not None or (req.model_extra or {}).get(name) is not None:
            raise invalid_param(f"{name} is not supported with use_beam_search", name, code="unsupported_value")
    for name in ("stop", "stop_token_ids"):  # the search ends beams at EOS only: a stop would be ignored silently
        if getattr(req, name):
            raise invalid_param(f"{name} is not supported with use_beam_search", name, code="unsupported_value")


async def beam_search_completion(ctx: ServingContext, req: CompletionRequest, request_id: str,
                                 token_lists: list[list[int]], budgets: list[int],
                                 echo_texts: list[str]) -> CompletionResponse:
    """One search per prompt (each with its own output budget), run concurrently; choices best first."""
    tag = uuid.uuid4().hex[:8]
    timings = [RequestTiming(arrival=time.monotonic()) for _ in token_lists]
    eos = tuple(ctx.engine.eos_token_ids)

    async def score(sequences: list[list[int]], k: int, prompt_index: int, steps: itertools.count):
        params = next_token_params(k)
        step = next(steps)
        ids = [f"{request_id}-beam-{tag}-{prompt_index}-{step}-{i}" for i in range(len(sequences))]

        async def one(seq, rid):
            top = None
            async for out in ctx.generate(seq, params, rid, RequestTiming(arrival=time.monotonic()),
                                          cache_salt=req.cache_salt):
                if out.outputs and out.outputs[0].logprobs:  # the one token's entry, in whichever output has it
                    top = out.outputs[0].logprobs[0].top
            return top

        return await asyncio.gather(*(one(seq, rid) for seq, rid in zip(sequences, ids)))

    async def search(index: int, prompt: list[int]):
        params = BeamSearchParams(beam_width=req.n, max_tokens=budgets[index], length_penalty=req.length_penalty,
                                  early_stopping=req.early_stopping, ignore_eos=req.ignore_eos)
        try:
            params.validate(len(eos))
        except ConfigError as e:
            raise invalid_param(e.message, "n") from None
        steps = itertools.count()
        found = await beam_search_async(lambda seqs, k: score(seqs, k, index, steps), [prompt], params, eos)
        timings[index].finished = time.monotonic()
        return found[0]

    results = await asyncio.gather(*(search(i, p) for i, p in enumerate(token_lists)))
    choices, completion_tokens = [], 0
    for i, beams in enumerate(results):
        for j, beam in enumerate(beams[: req.n]):
            text = ctx.tokenizer.decode(beam.token_ids, skip_special_tokens=req.skip_special_tokens)
            stopped = bool(beam.token_ids) and beam.token_ids[-1] in eos and not req.ignore_eos
            choices.append(CompletionChoice(index=i * req.n + j, text=echo_texts[i] + text,
                                            finish_reason="stop" if stopped else "length"))
            completion_tokens += len(beam.token_ids)
        timings[i].num_output_tokens = len(beams[0].token_ids) if beams else 0
        ctx.metrics.observe_finished(timings[i], choices[-1].finish_reason if beams else "abort")
    return CompletionResponse(id=request_id, model=ctx.answer_model(req.model), choices=choices,
                              usage=Usage.of(sum(len(p) for p in token_lists), completion_tokens, 0))
