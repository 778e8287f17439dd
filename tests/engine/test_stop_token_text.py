"""The token that ends an output (a stop_token_ids entry, an end id) stays in token_ids but its text is no part of
the answer unless include_stop_str_in_output, as vLLM's; with skip_special_tokens off a special end token's text
used to reach the answer."""

from __future__ import annotations

import pytest
from engine_test_tokenizer import write_tokenizer_dir

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams

PROMPT = [30, 31, 32, 33]


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    path = tmp_path_factory.mktemp("stop-token")
    write_tiny_checkpoint(path, "llama", dtype="float32", num_shards=1,
                          config_overrides={"vocab_size": 420, "bos_token_id": None, "eos_token_id": None})
    write_tokenizer_dir(path)
    with LLM(str(path), dtype="float32", device="cpu", num_gpu_blocks_override=64) as engine:
        yield engine


def _answer(llm, **params):
    out = llm.generate([PROMPT], [SamplingParams(temperature=0, max_tokens=10, **params)])[0].outputs[0]
    return out.token_ids, out.text, out.finish_reason, out.stop_reason


def test_the_stop_tokens_text_is_left_out_unless_asked_for(llm):
    tokens, _, _, _ = _answer(llm, ignore_eos=True)
    tokenizer = llm.core.tokenizer
    j = next(j for j in range(2, len(tokens)) if tokens[j] not in tokens[:j] and tokenizer.decode(tokens[j:j + 1]))
    stop = tokens[j]
    for special in (True, False):
        ids, text, reason, stop_reason = _answer(llm, stop_token_ids=[stop], skip_special_tokens=special)
        assert ids == tokens[:j + 1] and reason == "stop" and stop_reason == stop
        assert text == tokenizer.decode(tokens[:j], skip_special_tokens=special), (text, special)
        ids, text, _, _ = _answer(llm, stop_token_ids=[stop], include_stop_str_in_output=True,
                                  skip_special_tokens=special)
        assert text == tokenizer.decode(tokens[:j + 1], skip_special_tokens=special), (text, special)
