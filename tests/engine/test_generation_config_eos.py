"""End ids that only generation_config.json lists (Llama-3 and Qwen2 instruct checkpoints do this) are end ids
everywhere: the scheduler stops on them and min_tokens bans them in the workers' sampler, on the real model runner."""

import json

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams


def test_min_tokens_bans_the_end_ids_of_generation_config(tmp_path):
    model = write_tiny_checkpoint(tmp_path / "m", "llama", dtype="float32", num_shards=1)
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    ends = list(range(0, vocab, 2))  # half the vocabulary ends a sequence: a draw hits one almost every step
    (model / "generation_config.json").write_text(json.dumps({"eos_token_id": ends}))
    params = SamplingParams(temperature=1.0, seed=7, min_tokens=12, max_tokens=40, n=8)
    with LLM(str(model), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=128) as llm:
        assert set(ends) <= set(llm.core.eos_token_ids)
        samples = llm.generate([[5, 6, 7, 8]], params)[0].outputs
    for sample in samples:
        assert not set(sample.token_ids[:12]) & set(ends), sample.token_ids  # banned under min_tokens
        assert sample.finish_reason == "stop" and len(sample.token_ids) < 40  # then the first end id stops it
