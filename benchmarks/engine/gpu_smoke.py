"""A quick GPU check of the engine paths that change the step loop, on a tiny seeded fp32 Llama (Triton kernels,
CUDA graphs): asynchronous vs synchronous scheduling, n-gram speculation vs plain greedy, beam search. Prints one
JSON line; every `identical` must be true.

    python3 benchmarks/engine/gpu_smoke.py
"""

from __future__ import annotations

import json
import random
import tempfile


def main() -> None:
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
    from vdeploy.engine.beam_search import BeamSearchParams
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams

    with tempfile.TemporaryDirectory() as d:
        path = str(write_tiny_checkpoint(f"{d}/tiny", "llama", dtype="float32", num_shards=1))
        rng = random.Random(0)
        base = [rng.randrange(3, 250) for _ in range(20)]
        prompts = [base * 3, [rng.randrange(3, 250) for _ in range(200)], base[:9] * 5]
        params = SamplingParams(temperature=0, max_tokens=48, ignore_eos=True)
        runs = {}
        for name, kw in {"sync": {"async_scheduling": False}, "async": {},
                         "ngram": {"speculative_config": {"method": "ngram", "num_speculative_tokens": 3}}}.items():
            with LLM(path, dtype="float32", device="cuda", **kw) as llm:
                runs[name] = [o.outputs[0].token_ids for o in llm.generate(prompts, params)]
                stats = llm.core.stats()
                if name == "ngram":
                    accepted = stats.spec_accepted_tokens_total
                    beams = llm.beam_search([prompts[1][:30]], BeamSearchParams(3, 8, ignore_eos=True))[0]
        print(json.dumps({"async_identical": runs["async"] == runs["sync"],
                          "ngram_identical": runs["ngram"] == runs["sync"], "ngram_accepted_tokens": accepted,
                          "beam_search_sequences": len(beams), "beam_best_len": len(beams[0].token_ids)}))


if __name__ == "__main__":
    main()
