"""Incremental detokenization: multi-byte UTF-8 split over tokens, stop strings, special tokens."""

import pytest
from engine_test_tokenizer import write_tokenizer_dir

from vdeploy.engine.detokenizer import IncrementalDetokenizer
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return Tokenizer.from_dir(write_tokenizer_dir(tmp_path_factory.mktemp("tok")))


def stream(tokenizer, prompt, ids, params, finish_at_end=True):
    detok = IncrementalDetokenizer(tokenizer, prompt, params)
    deltas = []
    stop = None
    for i, token in enumerate(ids):
        stop = detok.update([token], i + 1)
        last = stop is not None or (finish_at_end and i == len(ids) - 1)
        deltas.append(detok.take_delta(finished=last))
        if stop is not None:
            break
    return deltas, stop, detok


def test_multibyte_characters_split_over_tokens_are_never_emitted_broken(tokenizer):
    text = "Hello 🙂 wörld 😀😀 ünïcödé 日本"
    ids = tokenizer.encode(text, add_special_tokens=False)
    # the test only means something if some tokens are partial characters
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)
    deltas, stop, detok = stream(tokenizer, tokenizer.encode("Q:", add_special_tokens=False), ids, SamplingParams())
    assert stop is None
    assert "".join(deltas) == text == detok.output_text
    assert all("\ufffd" not in d for d in deltas)


def test_stop_string_truncates_and_never_leaks_while_streaming(tokenizer):
    ids = tokenizer.encode("Hello world. The end is near", add_special_tokens=False)
    deltas, stop, _ = stream(tokenizer, [], ids, SamplingParams(stop=["end is"]))
    assert stop == "end is"
    assert "".join(deltas) == "Hello world. The "
    assert not any("end" in d for d in deltas)
    deltas, stop, _ = stream(tokenizer, [], ids, SamplingParams(stop=["end is"], include_stop_str_in_output=True))
    assert "".join(deltas) == "Hello world. The end is"


def test_stop_strings_ignored_before_min_tokens(tokenizer):
    ids = tokenizer.encode("stop here please stop now", add_special_tokens=False)
    first_stop_tokens = len(tokenizer.encode("stop", add_special_tokens=False))
    params = SamplingParams(stop=["stop"], min_tokens=first_stop_tokens + 1, max_tokens=50)
    deltas, stop, _ = stream(tokenizer, [], ids, params)
    assert stop == "stop"
    assert "".join(deltas) == "stop here please "


def test_held_back_text_is_flushed_when_finished_without_a_stop(tokenizer):
    ids = tokenizer.encode("Hello world. The e", add_special_tokens=False)
    deltas, stop, _ = stream(tokenizer, [], ids, SamplingParams(stop=["end is near"]))
    assert stop is None and "".join(deltas) == "Hello world. The e"
    assert deltas[-1].endswith("The e")  # the holdback came out only at the end


def test_special_tokens_skipped_or_kept(tokenizer):
    im_end = tokenizer.token_to_id("<|im_end|>")
    ids = tokenizer.encode("Hello", add_special_tokens=False) + [im_end] + tokenizer.encode(" world", add_special_tokens=False)
    assert "".join(stream(tokenizer, [], ids, SamplingParams())[0]) == "Hello world"
    kept = "".join(stream(tokenizer, [], ids, SamplingParams(skip_special_tokens=False))[0])
    assert kept == "Hello<|im_end|> world"


def test_without_tokenizer_there_is_no_text():
    detok = IncrementalDetokenizer(None, [1, 2], SamplingParams(stop=["x"]))
    assert detok.update([5, 6], 2) is None and detok.take_delta(True) == ""


def test_an_incomplete_character_at_the_end_is_flushed_as_replacement(tokenizer):
    ids = tokenizer.encode("ok 🙂", add_special_tokens=False)
    partial = next(i for i in range(1, len(ids)) if tokenizer.decode(ids[:i]).endswith("\ufffd"))
    deltas, _, detok = stream(tokenizer, [], ids[:partial], SamplingParams())
    assert "".join(deltas) == tokenizer.decode(ids[:partial]) == detok.output_text
    assert "\ufffd" not in "".join(deltas[:-1])  # only the final flush shows it
