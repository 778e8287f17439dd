"""Batched sampling on the device: one pass over the [N, V] logits for all requests, one host sync at the end.

Order of operations (vLLM / OpenAI semantics):
  0. guided decoding: tokens outside a request's grammar masked to -inf (worker/grammar_mask.py);
  1. min_tokens: stop tokens banned while a request is too short (unless its grammar allows nothing else);
  2. penalties: repetition (prompt + output tokens), presence and frequency (output tokens);
  3. logprobs are taken here, from the penalised logits before temperature (what the model proposes);
  4. greedy rows: argmax;
  5. other rows: temperature, min_p, top_k, top_p, then an exponential race (Gumbel-max in disguise):
     argmax(p / E) with E ~ Exp(1) is a draw from p. Seeded rows get their E from a generator seeded by
     (seed, tokens generated so far), so results do not depend on batch composition or on worker state.
     On a GPU, a batch with no top-k, top-p or min-p takes one Triton pass instead (ops.gumbel_sample:
     argmax(logits / T + Gumbel noise), the noise by Philox from the same per-row seeds, unseeded rows' seeds drawn
     from the engine's generator on the device): the same distribution at one read of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vdeploy.engine.outputs import ScheduledRequest, TokenLogprobs
from vdeploy.layers import ops
from vdeploy.worker.grammar_mask import apply_token_bitmasks, has_bitmasks
from vdeploy.worker.device import to_device
from vdeploy.worker.sampling_tensors import SamplingTensors, penalty_token_counts


@dataclass
class SamplerOutput:
    sampled_token_ids: list[int]
    logprobs: list[TokenLogprobs] | None  # aligned with the rows when any row asked; `top` empty for the others


class Sampler:
    """Owns the generator of unseeded rows (per engine, never global) and the EOS ids for min_tokens."""

    def __init__(self, vocab_size: int, eos_token_ids: tuple[int, ...], device: torch.device, seed: int = 0):
        self.vocab_size = vocab_size
        self.eos_token_ids = eos_token_ids
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def __call__(self, logits: torch.Tensor, requests: list[ScheduledRequest]) -> SamplerOutput:
        return self.sample(logits, requests).copy_to_host().wait()

    def sample(self, logits: torch.Tensor, requests: list[ScheduledRequest]) -> DeviceSample:
        """logits: [N, V'] float32 (V' >= vocab size: padded vocab columns are dropped); one row per request.
        Launches only: nothing here waits for the device."""
        logits = logits[:, : self.vocab_size].float()  # [N, V]
        st = SamplingTensors.from_requests(requests, self.vocab_size, self.eos_token_ids, logits.device)
        guided = has_bitmasks(requests)
        if guided:
            logits = apply_token_bitmasks(logits, requests)
        logits = self._ban_stop_tokens(logits, st, guided)
        if st.any_penalties:
            logits = apply_penalties(logits, requests, st)
        logprobs = torch.log_softmax(logits, dim=-1) if st.max_num_logprobs >= 0 else None  # [N, V]
        if not st.all_greedy and logits.is_cuda and not (st.any_top_k or st.any_top_p or st.any_min_p):
            greedy_ids, drawn = ops.gumbel_sample(logits, st.temperature, self._row_seeds(st))
            sampled = torch.where(st.greedy, greedy_ids, drawn)
            return DeviceSample(sampled, _pack_logprobs(sampled, logprobs, st), st.num_logprobs)
        sampled = logits.argmax(dim=-1)  # [N]
        if not st.all_greedy:
            probs = self._sampling_probs(logits, st)
            drawn = self._exponential_race(probs, st)
            sampled = torch.where(st.greedy, sampled, drawn)
        return DeviceSample(sampled, _pack_logprobs(sampled, logprobs, st), st.num_logprobs)

    def _row_seeds(self, st: SamplingTensors) -> torch.Tensor:
        """[N] int64 Philox seeds for this step: a seeded row's step seed (as the exponential race uses it), the
        others drawn from the engine's generator on the device (no host sync)."""
        n = len(st.row_seeds)
        drawn = torch.randint(0, 2**62, (n,), generator=self.generator, device=self.device)  # [N]
        if all(seed is None for seed in st.row_seeds):
            return drawn
        fixed = torch.tensor([0 if s is None else s for s in st.row_seeds], dtype=torch.int64)
        has_seed = torch.tensor([s is not None for s in st.row_seeds])
        return torch.where(to_device(has_seed, self.device), to_device(fixed, self.device), drawn)

    def _ban_stop_tokens(self, logits: torch.Tensor, st: SamplingTensors, guided: bool) -> torch.Tensor:
        rows = [i for i, ids in enumerate(st.banned_token_ids) for _ in ids]
        if not rows:
            return logits
        cols = [t for ids in st.banned_token_ids for t in ids]
        banned = logits.clone()
        banned[to_device(rows, logits.device), to_device(cols, logits.device)] = float("-inf")
        if not guided:
            return banned
        # a grammar that is complete allows only stop tokens: its end wins over min_tokens (a row left with no
        # token at all would sample one the grammar refuses, after a finished answer)
        empty = torch.isneginf(banned.amax(dim=-1, keepdim=True))  # [N, 1]
        return torch.where(empty, logits, banned)

    def _sampling_probs(self, logits: torch.Tensor, st: SamplingTensors) -> torch.Tensor:
        logits = logits / st.temperature[:, None]
        if st.any_top_k or st.any_top_p:
            logits = apply_top_k_top_p(logits, st.top_k, st.top_p, st.any_top_p)
        probs = torch.softmax(logits, dim=-1)  # [N, V]
        if st.any_min_p:
            # drop tokens less likely than min_p times the most likely one (the max always survives)
            threshold = probs.amax(dim=-1, keepdim=True) * st.min_p[:, None]
            probs = probs.masked_fill(probs < threshold, 0.0)
        return probs

    def _exponential_race(self, probs: torch.Tensor, st: SamplingTensors) -> torch.Tensor:
        noise = torch.empty_like(probs)  # [N, V]
        noise.exponential_(generator=self.generator)
        for row, seed in enumerate(st.row_seeds):
            if seed is not None:
                gen = torch.Generator(device=probs.device)
                gen.manual_seed(seed)
                noise[row].exponential_(generator=gen)
        return (probs / noise).argmax(dim=-1)


def _pack_logprobs(sampled: torch.Tensor, logprobs: torch.Tensor | None, st: SamplingTensors) -> torch.Tensor | None:
    """[N, 2 + 2k] float64: chosen logprob, top ids, top logprobs (ids < 2**53 are exact), for one transfer."""
    if logprobs is None:
        return None
    chosen = logprobs.gather(1, sampled[:, None])[:, 0]  # [N]
    k = max(st.max_num_logprobs, 0)
    top_vals, top_ids = logprobs.topk(k, dim=-1) if k else (logprobs[:, :0], sampled[:, None][:, :0])
    return torch.cat([chosen[:, None].double(), top_ids.double(), top_vals.double()], dim=1)


@dataclass
class DeviceSample:
    """One step's sampled tokens, still on the device (the next step may read them there)."""

    sampled: torch.Tensor  # [N] int64
    packed_logprobs: torch.Tensor | None  # [N, 1 + 2k] float64, see _pack_logprobs
    num_logprobs: list[int]  # per row, -1 = not requested

    def copy_to_host(self) -> HostSample:
        """Start the device-to-host copy (into pinned memory, non-blocking) and mark its end with an event."""
        if self.sampled.device.type != "cuda":
            return HostSample(self.sampled, self.packed_logprobs, self.num_logprobs, None)
        sampled = self.sampled.to("cpu", non_blocking=True)
        packed = None if self.packed_logprobs is None else self.packed_logprobs.to("cpu", non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return HostSample(sampled, packed, self.num_logprobs, done)


@dataclass
class HostSample:
    sampled: torch.Tensor  # [N] on the host once `done` has passed
    packed_logprobs: torch.Tensor | None
    num_logprobs: list[int]
    done: torch.cuda.Event | None

    def wait(self) -> SamplerOutput:
        if self.done is not None:
            self.done.synchronize()  # the step's one wait for the device
        ids = self.sampled.tolist()
        if self.packed_logprobs is None:
            return SamplerOutput(ids, None)
        packed = self.packed_logprobs
        k = (packed.shape[1] - 1) // 2
        result = []
        for row, num in enumerate(self.num_logprobs):
            top = []
            if num > 0:
                top_row_ids = packed[row, 1 : 1 + num].long().tolist()
                top_row_vals = packed[row, 1 + k : 1 + k + num].tolist()
                top = list(zip(top_row_ids, top_row_vals))
            result.append(TokenLogprobs(token_id=ids[row], logprob=float(packed[row, 0]), top=top))
        return SamplerOutput(ids, result)


def apply_penalties(logits: torch.Tensor, requests: list[ScheduledRequest], st: SamplingTensors) -> torch.Tensor:
    """logits [N, V] with repetition, presence and frequency penalties applied (a new tensor)."""
    output_counts, seen = penalty_token_counts(requests, logits.shape[1], logits.device)  # [N, V] each
    rep = st.repetition_penalty[:, None].expand_as(logits)
    # repetition penalty shrinks seen tokens toward "less likely": divide positive logits, multiply negative ones
    penalised = torch.where(logits > 0, logits / rep, logits * rep)
    logits = torch.where(seen, penalised, logits)
    logits = logits - st.frequency_penalty[:, None] * output_counts
    logits = logits - st.presence_penalty[:, None] * (output_counts > 0).float()
    return logits


def apply_top_k_top_p(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, use_top_p: bool
) -> torch.Tensor:
    """Mask (to -inf) tokens outside each row's top_k [N] and nucleus top_p [N]. One sort serves both."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # [N, V]
    vocab = logits.shape[1]
    ranks = torch.arange(vocab, device=logits.device)[None, :]  # [1, V]
    drop = ranks >= top_k[:, None]  # [N, V] in sorted order
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    if use_top_p:
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens strictly before it already cover top_p (the first token always stays)
        mass_before = probs.cumsum(dim=-1) - probs
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p[:, None], float("-inf"))
    return torch.empty_like(logits).scatter_(1, order, sorted_logits)
