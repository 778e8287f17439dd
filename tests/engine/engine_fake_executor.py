"""A deterministic stand-in for the model executor, for engine tests without a model.

It keeps a paged "KV cache" of token ids: each step writes the scheduled tokens into the slots their block table
names, and a sampled token is a hash of the context *read back through the block table*. Wrong block tables, a
bad prefix-cache hit or a lost preemption therefore change the generated tokens, which tests compare against
`reference_next_token` applied to the true sequence.
"""

from __future__ import annotations

import random

from vdeploy.config import ModelConfig
from vdeploy.engine.kv_cache_spec import KVCacheSpec
from vdeploy.engine.outputs import PLACEHOLDER_TOKEN_ID, ModelRunnerOutput, SchedulerOutput
from vdeploy.engine.step_handle import CompletedStep
from vdeploy.worker.block_tables import BlockTables

VOCAB = 1000

# the model the engine believes it serves (only its limits and eos matter to the fake)
TINY_LLAMA = ModelConfig.from_dict(
    {
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 1000,
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 128,
        "eos_token_id": 999,
    }
)



def reference_next_token(
    context: list[int], num_output_tokens: int, seed: int | None, temperature: float, vocab: int = VOCAB
) -> int:
    if temperature > 0 and seed is not None:
        return random.Random(seed * 1_000_003 + num_output_tokens * 7919 + len(context)).randrange(vocab)
    acc = 17
    for i, token in enumerate(context):
        acc = (acc * 1_000_003 + token * (i + 1)) % 1_000_000_007
    return acc % vocab


class PagedTokenExecutor:
    def __init__(self, block_size: int = 4, num_blocks: int = 64, vocab: int = VOCAB):
        self.vocab = vocab
        self.kv_cache_spec = KVCacheSpec("mha", 1, block_size, 1, 1, "float32")
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.slots: list[int | None] = []
        self.steps: list[SchedulerOutput] = []
        self.last_sampled: dict[str, int] = {}
        self.tables = BlockTables()  # the previous step's tokens, by request
        self.shut_down = False

    def determine_num_kv_blocks(self) -> int:
        return self.num_blocks

    def initialize_kv_cache(self, num_blocks: int) -> None:
        self.slots = [None] * (num_blocks * self.block_size)

    def _slot(self, block_ids: list[int], pos: int) -> int:
        return block_ids[pos // self.block_size] * self.block_size + pos % self.block_size

    def execute_async(self, sched: SchedulerOutput) -> CompletedStep:
        """Runs at launch, as the device would in stream order (subclasses hook `execute`)."""
        return CompletedStep(self.execute(sched))

    def execute(self, sched: SchedulerOutput) -> ModelRunnerOutput:
        """Placeholder tokens are replaced by the previous step's samples, as a worker does on the device."""
        self.steps.append(sched)
        tables = self.tables.apply(sched)  # block-table diffs, as every rank folds them in
        # like a real model layer: store the whole batch first, then read (attention)
        for r in sched.requests:
            for i, token in enumerate(r.token_ids):
                if token == PLACEHOLDER_TOKEN_ID:
                    token = self.last_sampled[r.req_id]  # KeyError: a placeholder the last step never sampled
                self.slots[self._slot(tables[r.req_id], r.start_pos + i)] = token
        req_ids, tokens = [], []
        for r in sched.requests:
            if not r.sample:
                continue
            end = r.start_pos + len(r.token_ids)
            context = [self.slots[self._slot(tables[r.req_id], p)] for p in range(end)]
            params = r.sampling_params
            req_ids.append(r.req_id)
            tokens.append(reference_next_token(context, r.num_output_tokens, params.seed, params.temperature, self.vocab))
        self.last_sampled = dict(zip(req_ids, tokens))
        return ModelRunnerOutput(req_ids=req_ids, sampled_token_ids=tokens)

    def shutdown(self) -> None:
        self.shut_down = True


def reference_generation(
    prompt: list[int], max_tokens: int, seed: int | None = None, temperature: float = 0.0, vocab: int = VOCAB
):
    seq = list(prompt)
    out = []
    for _ in range(max_tokens):
        token = reference_next_token(seq, len(out), seed, temperature, vocab)
        out.append(token)
        seq.append(token)
    return out
