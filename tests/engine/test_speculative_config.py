"""speculative_config is checked as vLLM checks it: a speculation length below 1, an empty or inverted n-gram range
and a value of the wrong type are refused naming the setting (they used to leave speculation silently off, or crash
with a raw TypeError), and every key the engine supports — vLLM's n-gram keys prompt_lookup_min / prompt_lookup_max
included — is accepted by LLM(speculative_config=...) and by --speculative-config alike."""

import json

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.cli.vllm_compat import speculative_flags
from vdeploy.engine.llm import LLM, build_engine_config
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError
from vdeploy.speculative_config import SPECULATIVE_CONFIG_KEYS, SpeculativeConfig

REFUSED = [
    ({"num_speculative_tokens": 0}, "num_speculative_tokens"),
    ({"num_speculative_tokens": -2}, "num_speculative_tokens"),
    ({"num_speculative_tokens": "3"}, "num_speculative_tokens"),
    ({"num_speculative_tokens": True}, "num_speculative_tokens"),
    ({"num_speculative_tokens": 2.5}, "num_speculative_tokens"),
    ({"num_speculative_tokens": 3, "prompt_lookup_max": 0}, "prompt_lookup_max"),
    ({"num_speculative_tokens": 3, "prompt_lookup_min": 0}, "prompt_lookup_min"),
    ({"num_speculative_tokens": 3, "prompt_lookup_min": 4, "prompt_lookup_max": 2}, "prompt_lookup_min"),
    ({"num_speculative_tokens": 3, "prompt_lookup_min": 5}, "prompt_lookup_max"),  # above the default maximum, 3
    ({"num_speculative_tokens": 3, "prompt_lookup_max": "4"}, "prompt_lookup_max"),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("spec"), "llama", dtype="float32", num_shards=1)


@pytest.mark.parametrize("settings, named", REFUSED)
def test_invalid_settings_are_refused_naming_the_setting(checkpoint, settings, named):
    spec = {"method": "ngram", **settings}
    with pytest.raises(ConfigError, match=named):
        LLM(str(checkpoint), dtype="float32", device="cpu", speculative_config=spec)
    with pytest.raises(ConfigError, match=named):
        speculative_flags(json.dumps(spec))
    with pytest.raises(ConfigError, match=named):
        SpeculativeConfig(**spec)


def test_unknown_method_and_keys_are_refused():
    with pytest.raises(ConfigError, match="'eagle' is not supported"):
        SpeculativeConfig(method="eagle")
    with pytest.raises(ConfigError, match="speculative_config: unknown key.* draft_model") as info:
        build_engine_config("/m", speculative_config={"method": "ngram", "draft_model": "x"})
    assert "prompt_lookup_max" in info.value.hint  # the supported keys, as the engine defines them
    with pytest.raises(ConfigError, match="must be a mapping"):
        build_engine_config("/m", speculative_config="ngram")


def test_every_engine_key_is_accepted_on_the_command_line_and_in_python():
    text = '{"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_min": 2, "prompt_lookup_max": 4}'
    flags = speculative_flags(text)
    assert set(flags) == set(SPECULATIVE_CONFIG_KEYS.values())
    from_cli = build_engine_config("/m", **flags).speculative  # as generate and bench build it
    from_python = build_engine_config("/m", speculative_config=json.loads(text)).speculative
    assert from_cli == from_python == SpeculativeConfig("ngram", 5, prompt_lookup_min=2, prompt_lookup_max=4)
    assert speculative_flags('{"method": "ngram", "prompt_lookup_max": 4}') == {
        "speculative_method": "ngram", "prompt_lookup_max": 4}  # only the keys given: the rest keep their defaults


def test_the_ngram_range_reaches_the_drafter(checkpoint):
    # every token of the vocabulary once: each generated token is a 1-gram seen before, but no 4-gram recurs
    prompt = list(range(256))
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    outputs, drafts = [], []
    for lookup in [None, (1, 4), (4, 4)]:
        spec = None if lookup is None else {"method": "ngram", "num_speculative_tokens": 3,
                                            "prompt_lookup_min": lookup[0], "prompt_lookup_max": lookup[1]}
        with LLM(str(checkpoint), dtype="float32", device="cpu", num_gpu_blocks_override=32,
                 speculative_config=spec) as llm:
            (out,) = llm.generate([prompt], params)
            outputs.append(out.outputs[0].token_ids)
            drafts.append(llm.core.stats().spec_draft_tokens_total)
    assert drafts[1] > 0 and drafts[2] == 0
    assert outputs[1] == outputs[2] == outputs[0]  # drafts or none, the tokens are plain greedy decoding's
