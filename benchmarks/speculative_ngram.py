"""n-gram speculative decoding on the demo model (CPU or GPU): a workload that repeats its prompt (the model is asked
to copy a passage), greedy, without speculation and with k = 2, 3, 5 drafts; the same tokens every time, the
acceptance rate, and the speed-up.

    python benchmarks/speculative_ngram.py [--out results.json] [--num-prompts 4] [--max-tokens 96]
    python benchmarks/speculative_ngram.py --model /tmp/peer/models/llama31-8b-dummy --load-format dummy --ks 2 3

With --model (e.g. the peer bundle's Llama-3.1-8B shape with dummy weights on a GPU) the prompt is the passage twice,
without a chat template: random weights accept little, but whether every run keeps the tokens of the run without
speculation is the question there (a verify step's rows against one-row steps, docs/speculative.md).
"""

from __future__ import annotations

import argparse
import json
import time

PASSAGES = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun while the fox runs into the forest.",
    "Paris is the capital of France. It is known for the Eiffel Tower, the Louvre museum and its many cafes.",
    "To install the package, run pip install vdeploy, then start the server with vdeploy serve and open the API.",
    "Water boils at one hundred degrees Celsius at sea level, and it freezes at zero degrees Celsius.",
]


def main() -> None:
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams

    ap = argparse.ArgumentParser()
    ap.add_argument("--num-prompts", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 3, 5])
    ap.add_argument("--out", default=None)
    ap.add_argument("--model", default=None, help="a model directory instead of the demo model")
    ap.add_argument("--load-format", default="auto", help="with --model: dummy for config-only directories")
    args = ap.parse_args()
    model_kw = {"load_format": args.load_format} if args.model else {}
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    runs, reference = [], None
    for k in [0, *args.ks]:
        spec = {"method": "ngram", "num_speculative_tokens": k} if k else None
        with LLM(args.model, speculative_config=spec, **model_kw) as llm:  # None: the demo model
            prompts = [llm.encode(f"{p} {p}") if args.model else
                       llm.encode_chat([{"role": "user", "content": f"Repeat this text exactly: {p}"}])
                       for p in PASSAGES[: args.num_prompts]]
            llm.generate(prompts[:1], SamplingParams(temperature=0, max_tokens=4))  # warm-up
            start = time.perf_counter()
            outs = llm.generate(prompts, params)
            elapsed = time.perf_counter() - start
            stats = llm.core.stats()
        tokens = [o.outputs[0].token_ids for o in outs]
        reference = reference or tokens
        generated = sum(map(len, tokens))
        runs.append({"num_speculative_tokens": k, "output_tok_per_s": round(generated / elapsed, 2),
                     "elapsed_s": round(elapsed, 3), "generated_tokens": generated,
                     "acceptance_rate": round(stats.spec_accepted_tokens_total / stats.spec_draft_tokens_total, 4)
                     if stats.spec_draft_tokens_total else None,
                     "identical_to_no_speculation": tokens == reference})
        print(runs[-1], flush=True)
    base = runs[0]["output_tok_per_s"]
    for r in runs:
        r["speedup"] = round(r["output_tok_per_s"] / base, 3)
    report = {"model": args.model or "demo (SmolLM2-135M-Instruct)",
              "workload": "a passage twice (greedy)" if args.model else "copy a passage (greedy)", "runs": runs,
              "sample_output": outs[0].outputs[0].text[:200]}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
