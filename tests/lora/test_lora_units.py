"""The pieces of multi-LoRA one by one: slot bookkeeping and cache salts (registry), the token runs the kernel
walks (LoRABatch), the slot memory the launch plan counts, and the in-thread server engine (`serve
--no-engine-process`) loading, serving and unloading an adapter."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from lora_testlib import ADAPTERS, MAX_TOKENS, PROMPTS

from vdeploy.config import CacheConfig, EngineConfig, LoRAConfig, ModelConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vdeploy.testing.lora_fixtures import write_peft_adapter, write_tiny_llama

    root = tmp_path_factory.mktemp("lora-units")
    base = write_tiny_llama(root / "model")
    merged = write_peft_adapter(base, root / "chat", **ADAPTERS["chat"])
    return root, ModelConfig.from_path(root / "model"), merged


def test_registry_slots_salts_and_refusals(tiny):
    from vdeploy.lora.adapter import LoRAAdapterError
    from vdeploy.lora.registry import LoRANotFoundError, LoRARegistry

    root, model, _ = tiny
    registry = LoRARegistry(LoRAConfig(enable_lora=True, max_loras=2, max_lora_rank=8), model)
    adapter = registry.check("a", str(root / "chat"))
    assert adapter.rank == 8 and adapter.scaling == 2.0 and len(adapter.pairs) == 2 * 6
    slot_a = registry.add(adapter)
    slot_b = registry.add(registry.check("b", str(root / "chat")))
    assert {slot_a, slot_b} == {0, 1}
    with pytest.raises(LoRAAdapterError, match="already loaded"):
        registry.check("a", str(root / "chat"))
    with pytest.raises(LoRAAdapterError, match="slots are in use"):
        registry.check("c", str(root / "chat"))
    running_slot, salt_a = registry.acquire("a")
    registry.remove("a")
    with pytest.raises(LoRANotFoundError):
        registry.acquire("a")
    with pytest.raises(LoRAAdapterError, match="slots are in use"):  # "a"'s request still runs on its slot
        registry.check("a", str(root / "chat"))
    registry.release(running_slot)
    assert registry.add(registry.check("a", str(root / "chat"))) == running_slot
    # the same name loaded again: a new salt, so no prefix-cache block of the old adapter is reused
    assert registry.acquire("a")[1] != salt_a and registry.acquire("b")[1] != salt_a
    with pytest.raises(LoRAAdapterError, match="above --max-lora-rank 4"):
        LoRARegistry(LoRAConfig(max_loras=1, max_lora_rank=4), model).check("x", str(root / "chat"))


def test_a_missing_lora_alpha_scales_as_peft_does(tiny, tmp_path):
    """PEFT's LoraConfig defaults lora_alpha to 8: an adapter_config.json without it is scaled by 8 / r there."""
    import json

    from vdeploy.lora.adapter import read_adapter
    from vdeploy.testing.lora_fixtures import write_peft_adapter

    root, model, _ = tiny
    adapter = tmp_path / "no-alpha"
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(root / "model")
    write_peft_adapter(base, adapter, r=4, lora_alpha=4, target_modules=["q_proj"], seed=3)
    config = json.loads((adapter / "adapter_config.json").read_text())
    del config["lora_alpha"]
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    assert read_adapter("x", adapter, model, max_rank=8).scaling == 8 / 4


def test_token_runs_of_a_mixed_batch():
    from vdeploy.lora.layers import LoRABatch

    batch = LoRABatch(16, "cpu")
    batch.set_eager(np.array([-1, -1, 1, 1, 1, 0, -1, 0, 0], dtype=np.int32))
    token_slots, seg_starts, seg_slots, max_run = batch.views(9)
    assert batch.active and seg_starts.tolist() == [0, 2, 5, 6, 7, 9] and seg_slots.tolist() == [-1, 1, 0, -1, 0]
    assert max_run == 3  # the kernel's grid: tiles of the longest run
    assert token_slots.tolist() == [-1, -1, 1, 1, 1, 0, -1, 0, 0]
    batch.set_eager(np.full(4, -1, dtype=np.int32))
    assert not batch.active  # a step without adapters skips the LoRA op
    batch.set_graph(np.array([1, -1, 0], dtype=np.int32), 4)  # padded to the graph's bucket, one run per token
    token_slots, seg_starts, seg_slots, max_run = batch.views(4)
    assert seg_starts.tolist() == [0, 1, 2, 3, 4] and seg_slots.tolist() == [1, -1, 0, -1] and max_run == 1


@pytest.mark.parametrize("tp", [1, 3])
def test_planned_slot_bytes_match_the_allocated_slots(tiny, tp):
    import torch

    from vdeploy.distributed.parallel_state import ParallelState
    from vdeploy.lora.adapter import lora_slot_bytes
    from vdeploy.lora.layers import attach_lora
    from vdeploy.models.llama import LlamaForCausalLM

    _, model_config, _ = tiny

    parallel = ParallelState(tp_rank=tp - 1, tp_size=tp)  # shapes only: no process group is used
    with torch.device("meta"):
        model = LlamaForCausalLM(model_config, parallel, torch.float32)
    _, layers = attach_lora(model, 3, 8, 16, torch.float32, torch.device("meta"))
    allocated = sum(b.numel() * b.element_size() for m in layers.values() for b in m.lora.buffers())
    assert allocated == lora_slot_bytes(model_config, 3, 8, tp, 4)


@pytest.mark.timeout(120)
def test_in_thread_engine_loads_serves_and_unloads(tiny):
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.lora.registry import LoRANotFoundError
    from vdeploy.testing.lora_fixtures import hf_greedy

    root, _, merged = tiny
    config = EngineConfig(model=str(root / "model"), dtype="float32", device="cpu",
                          cache=CacheConfig(block_size=4, num_gpu_blocks_override=64),
                          lora=LoRAConfig(enable_lora=True, max_loras=1, max_lora_rank=8))
    engine = AsyncEngine(config, model_name="tiny")
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)

    async def run():
        await engine.load_lora("chat", str(root / "chat"))
        assert engine.lora_adapters == {"chat": str((root / "chat").resolve())}
        tokens = []
        async for out in engine.generate(PROMPTS[0], params, "r1", lora_name="chat"):
            tokens = out.outputs[0].token_ids
        await engine.unload_lora("chat")
        with pytest.raises(LoRANotFoundError):
            await engine.unload_lora("chat")
        return tokens

    try:
        assert asyncio.run(run()) == hf_greedy(merged, PROMPTS[0], MAX_TOKENS)[0]
        assert engine.lora_adapters == {}
    finally:
        engine.close()
