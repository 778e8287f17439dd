"""Grammar bitmasks in the sampler: xgrammar's kernel and the torch fallback agree bit for bit, free rows of the
same batch are untouched, and a masked row can only sample allowed tokens (greedy and seeded sampling)."""

from __future__ import annotations

import builtins

import torch

from vdeploy.engine.outputs import ScheduledRequest
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.worker import grammar_mask
from vdeploy.worker.sampler import Sampler

V = 1000
WORDS = (V + 31) // 32


def _bitmask(allowed: list[int]) -> bytes:
    import numpy as np

    words = np.zeros(WORDS, dtype=np.uint32)
    for t in allowed:
        words[t // 32] |= np.uint32(1 << (t % 32))
    return words.view(np.int32).tobytes()


def _requests(masks, params=None):
    return [ScheduledRequest(f"r{i}", [0], 0, [], True, params or SamplingParams(temperature=0.0), i,
                             token_bitmask=m) for i, m in enumerate(masks)]


def test_xgrammar_and_torch_paths_agree_and_free_rows_stay(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    masks = [torch.randint(-2**31, 2**31 - 1, (WORDS,), dtype=torch.int32, generator=gen).numpy().tobytes()
             if i % 2 == 0 else None for i in range(5)]
    reqs = _requests(masks)
    logits = torch.randn(5, V, generator=gen)
    with_xgr = grammar_mask.apply_token_bitmasks(logits, reqs)
    real_import = builtins.__import__

    def no_xgrammar(name, *a, **kw):
        if name == "xgrammar":
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_xgrammar)
    with_torch = grammar_mask.apply_token_bitmasks(logits, reqs)
    assert torch.equal(with_xgr, with_torch)
    assert torch.equal(with_xgr[1], logits[1]) and torch.equal(with_xgr[3], logits[3])
    assert torch.isinf(with_xgr[0]).any()


def test_sampler_picks_only_allowed_tokens():
    allowed = [3, 77, 500, 999]
    sampler = Sampler(V, (1,), torch.device("cpu"), seed=0)
    for params in (SamplingParams(temperature=0.0), SamplingParams(temperature=1.0, seed=5),
                   SamplingParams(temperature=1.0, top_p=0.9, logprobs=2)):
        reqs = _requests([_bitmask(allowed), None, _bitmask(allowed[:1])], params)
        out = sampler(torch.randn(3, V), reqs)
        assert out.sampled_token_ids[0] in allowed and out.sampled_token_ids[2] == 3
