"""Shared by the LoRA tests: a tiny Llama, two adapters (different ranks, targets and scalings) and what HF + peft
generate with each merged in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROMPTS = [[(37 * i + 11 * j) % 150 + 3 for j in range(n)] for i, n in enumerate([13, 6, 21])]
MAX_TOKENS = 6
ENGINE = dict(dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=128, enable_lora=True,
              max_loras=2, max_lora_rank=8)
ADAPTERS = {
    # attention only, rsLoRA scaling
    "sql": dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], seed=1, use_rslora=True),
    # every projection, a higher rank
    "chat": dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                     "down_proj"], seed=2),
}


@dataclass
class LoRASetup:
    model: Path
    adapters: dict[str, Path]
    # (adapter or None, prompt index) -> (greedy tokens, their logprobs) from HF (+ peft merged)
    expected: dict[tuple[str | None, int], tuple[list[int], list[float]]]


def build_setup(root: Path) -> LoRASetup:
    from vdeploy.testing.lora_fixtures import hf_greedy, write_peft_adapter, write_tiny_llama

    base = write_tiny_llama(root / "model")
    adapters, references = {}, {None: base}
    for name, kwargs in ADAPTERS.items():
        adapters[name] = root / name
        references[name] = write_peft_adapter(base, adapters[name], **kwargs)
    expected = {(name, i): hf_greedy(model, prompt, MAX_TOKENS)
                for name, model in references.items() for i, prompt in enumerate(PROMPTS)}
    return LoRASetup(root / "model", adapters, expected)


def mixed_batch(setup: LoRASetup):
    """Every prompt under every adapter and the base model, interleaved in one generate call."""
    from vdeploy.lora.request import LoRARequest

    jobs = [(name, i) for i in range(len(PROMPTS)) for name in (None, "sql", "chat")]
    ids = {"sql": 1, "chat": 2}
    requests = [LoRARequest(name, ids[name], str(setup.adapters[name])) if name else None for name, _ in jobs]
    return jobs, [PROMPTS[i] for _, i in jobs], requests


def check_outputs(setup: LoRASetup, jobs, outputs, logprob_tol: float = 2e-4) -> None:
    import math

    for (name, i), out in zip(jobs, outputs):
        tokens, logprobs = setup.expected[(name, i)]
        completion = out.outputs[0]
        assert completion.token_ids == tokens, (name, i)
        ours = [lp.logprob for lp in completion.logprobs]
        assert all(math.isclose(a, b, abs_tol=logprob_tol) for a, b in zip(ours, logprobs)), (name, i, ours, logprobs)
