"""MTP speculative decoding on a tiny DeepSeek-V3 with a multi-token-prediction layer under R1's tensor names:
greedy tokens equal HF transformers' plain greedy generation of the main model (fp32 and block FP8, k = 1..3,
chunked prefill, prefix caching, preemption, three tensor ranks), drafts really accepted, the MTP weights load
where they belong (embedding and head shared), and aborts mid-speculation free every block."""

import shutil

import pytest
import torch

from tests.deepseek.deepseek_fixtures import add_mtp_layer, convert_to_fp8, save_hf_model, tiny_v3_config
from tests.deepseek.test_deepseek_vs_hf import hf_greedy

PROMPTS = [[5, 17, 99, 3, 250, 41, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26],
           [5, 17, 99, 3, 250, 41, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 60, 61, 62],  # shares a prefix
           [1, 2, 3], [7, 7, 7, 8, 8]]
STEPS = 16


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(fp32 path, its HF greedy tokens, fp8 path, the fp8 checkpoint's HF greedy tokens). Six heads and
    intermediate sizes divisible by 3 so that three tensor ranks split them."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from vdeploy_kernels.reference_deepseek import dequantize_weight_block

    root = tmp_path_factory.mktemp("mtp")
    config = tiny_v3_config(num_attention_heads=6, num_key_value_heads=6, intermediate_size=192,
                            moe_intermediate_size=96)
    hf = save_hf_model(config, root / "fp32")
    add_mtp_layer(config, root / "fp32")
    expected = [hf_greedy(hf, p, STEPS) for p in PROMPTS]

    fp8_config = tiny_v3_config(hidden_size=256, q_lora_rank=128, kv_lora_rank=128)
    save_hf_model(fp8_config, root / "fp8", seed=3)
    add_mtp_layer(fp8_config, root / "fp8", seed=3)
    convert_to_fp8(root / "fp8")
    # HF's reference runs on exactly the dequantized weights (it ignores the MTP layer's tensors)
    shutil.copytree(root / "fp8", root / "deq")
    tensors = load_file(root / "fp8" / "model.safetensors")
    dense = {n: dequantize_weight_block(t, tensors[n + "_scale_inv"]) if n + "_scale_inv" in tensors else t
             for n, t in tensors.items() if not n.endswith("_scale_inv")}
    save_file(dense, root / "deq" / "model.safetensors", metadata={"format": "pt"})
    ref = AutoModelForCausalLM.from_pretrained(root / "deq", config=fp8_config, dtype=torch.float32).eval()
    return root / "fp32", expected, root / "fp8", [hf_greedy(ref, p, STEPS) for p in PROMPTS]


def generate(path, k: int, params=None, **engine_kwargs):
    from vdeploy import LLM, SamplingParams

    if k:
        engine_kwargs["speculative_config"] = {"method": "mtp", "num_speculative_tokens": k}
    engine_kwargs = {"block_size": 4, "num_gpu_blocks_override": 96, **engine_kwargs}
    with LLM(str(path), dtype="float32", device="cpu", **engine_kwargs) as llm:
        params = params or SamplingParams(temperature=0, max_tokens=STEPS, ignore_eos=True)
        first = llm.generate(PROMPTS[:1], params)  # fills the prefix cache for the second prompt
        rest = llm.generate(PROMPTS[1:], params)
        stats = llm.core.stats()
    assert stats.num_free_blocks == stats.num_total_blocks
    return [o.outputs[0].token_ids for o in first + rest], stats


@pytest.mark.parametrize("k, engine_kwargs", [
    (1, {}),
    (2, {"max_num_batched_tokens": 8}),  # chunked prefill
    (3, {"num_gpu_blocks_override": 13, "enable_prefix_caching": False}),  # preemption mid-speculation
])
def test_greedy_identical_to_hf_with_mtp_drafts(checkpoints, k, engine_kwargs):
    path, expected, _, _ = checkpoints
    tokens, stats = generate(path, k, **engine_kwargs)
    assert tokens == expected
    assert stats.spec_draft_tokens_total > 0 and stats.spec_accepted_tokens_total > 0
    assert stats.spec_steps_total > 0 and 1 < stats.spec_mean_accepted_length <= k + 1
    assert stats.spec_draft_seconds_total > 0
    if "num_gpu_blocks_override" in engine_kwargs:
        assert stats.num_preemptions > 0


def test_fp8_checkpoint_greedy_identical_to_hf_with_mtp_drafts(checkpoints):
    _, _, path, expected = checkpoints
    tokens, stats = generate(path, 2)
    assert tokens == expected and stats.spec_accepted_tokens_total > 0


@pytest.mark.timeout(240)
def test_three_tensor_ranks_speculate_identically(checkpoints):
    path, expected, _, _ = checkpoints
    tokens, stats = generate(path, 2, tensor_parallel_size=3)
    assert tokens == expected and stats.spec_accepted_tokens_total > 0


def test_sampling_with_mtp_drafts_runs_and_frees(checkpoints):
    from vdeploy import SamplingParams

    path, _, _, _ = checkpoints
    params = SamplingParams(temperature=0.7, max_tokens=STEPS, ignore_eos=True, seed=5)
    tokens, stats = generate(path, 2, params=params)
    assert all(len(t) == STEPS for t in tokens) and stats.spec_draft_tokens_total > 0


def test_abort_mid_speculation_frees_every_block(checkpoints):
    from vdeploy import LLM, SamplingParams

    path, _, _, _ = checkpoints
    with LLM(str(path), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=64,
             speculative_config={"method": "mtp", "num_speculative_tokens": 3}) as llm:
        core = llm.core
        for i, p in enumerate(PROMPTS):
            core.add_request(f"r{i}", p, SamplingParams(temperature=0, max_tokens=40, ignore_eos=True))
        while core.stats().spec_draft_tokens_total == 0:
            core.step()
        core.step()
        assert core.stats().num_free_blocks < core.stats().num_total_blocks
        core.abort_request([f"r{i}" for i in range(len(PROMPTS))])
        while core.has_unfinished_requests():
            core.step()
        core.step()
        stats = core.stats()
    assert stats.num_free_blocks == stats.num_total_blocks


def test_mtp_weights_load_under_r1_names(checkpoints):
    """Every MTP tensor of the checkpoint lands in the MTP module (its decoder block under mtp_block), the
    embedding and head copies are not loaded (the main model's are used), and a missing MTP tensor is named with
    its checkpoint name."""
    from safetensors.torch import load_file, save_file

    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.errors import CheckpointError
    from vdeploy.models.loader import load_model
    from vdeploy.speculative_config import SpeculativeConfig

    path, _, _, _ = checkpoints
    cfg = ModelConfig.from_path(path)
    engine = EngineConfig(model=str(path), speculative=SpeculativeConfig(method="mtp", num_speculative_tokens=1))
    model = load_model(engine, cfg, ParallelState(0, 1), "cpu", torch.float32, quiet=True)
    tensors = load_file(path / "model.safetensors")
    p = f"model.layers.{cfg.num_layers}."
    params = dict(model.named_parameters())
    for name in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight"):
        torch.testing.assert_close(params["mtp." + name], tensors[p + name])
    torch.testing.assert_close(params["mtp.mtp_block.self_attn.kv_a_layernorm.weight"],
                               tensors[p + "self_attn.kv_a_layernorm.weight"])
    assert not any("embed_tokens" in n or "head" in n.replace("shared_head.norm", "") for n in params
                   if n.startswith("mtp."))
    # without MTP the layer is skipped entirely
    plain = load_model(EngineConfig(model=str(path)), cfg, ParallelState(0, 1), "cpu", torch.float32, quiet=True)
    assert plain.mtp is None and not any(n.startswith("mtp.") for n, _ in plain.named_parameters())

    broken = path.parent / "broken"
    shutil.copytree(path, broken)
    del tensors[p + "hnorm.weight"]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"model\.layers\.{cfg.num_layers}\.hnorm\.weight"):
        load_model(EngineConfig(model=str(broken), speculative=engine.speculative), cfg, ParallelState(0, 1), "cpu",
                   torch.float32, quiet=True)


def test_speculation_pins_the_block_fp8_tiles_of_decode_rows_only(checkpoints, monkeypatch):
    """With speculation on, block-FP8 linears take their one-row tiles in steps of decode rows (a verify step's
    rows then sum as one-row steps do) and keep the tuned tile for each row count in prefill steps, as the plain
    engine does: a prompt's last few tokens after a prefix-cache hit must give the plain engine's first token
    (R1 at 7 layers on an H100 left it at output token 0 while every step of up to 16 rows was pinned)."""
    from vdeploy import LLM, SamplingParams
    from vdeploy.layers.fp8 import Fp8LinearMethod

    _, _, path, _ = checkpoints
    seen = []  # (rows, pinned) of every block-FP8 product
    apply = Fp8LinearMethod.apply

    def spy(self, layer, x, bias=None):
        seen.append((x.shape[0], self.pinning is not None and self.pinning.active))
        return apply(self, layer, x, bias)

    monkeypatch.setattr(Fp8LinearMethod, "apply", spy)
    prompt = list(range(3, 13))  # 10 rows of prefill
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    for spec in (None, {"method": "mtp", "num_speculative_tokens": 1}):
        seen.clear()
        with LLM(str(path), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=96,
                 speculative_config=spec) as llm:
            llm.generate([prompt], params)
        assert {pinned for rows, pinned in seen if rows == len(prompt)} == {False}, spec  # prefill (and its MTP pass)
        decode_rows = {pinned for rows, pinned in seen if rows <= 2}  # one decode row, or a k = 1 verify step's two
        assert decode_rows == ({True} if spec else {False}), spec


def test_mtp_refused_without_an_mtp_layer(tmp_path):
    from vdeploy import LLM
    from vdeploy.errors import ConfigError

    config = tiny_v3_config(num_nextn_predict_layers=0)
    save_hf_model(config, tmp_path)
    with pytest.raises(ConfigError, match="multi-token-prediction"):
        LLM(str(tmp_path), dtype="float32", device="cpu",
            speculative_config={"method": "mtp", "num_speculative_tokens": 1})


def test_async_engine_streams_mtp_speculation_and_cancelling_frees(checkpoints):
    """The asynchronous engine (the server's): streamed greedy tokens equal HF's while another stream is
    cancelled mid-speculation; every block comes back."""
    import asyncio

    from vdeploy import SamplingParams
    from vdeploy.config import CacheConfig, EngineConfig
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.speculative_config import SpeculativeConfig

    path, expected, _, _ = checkpoints
    cfg = EngineConfig(model=str(path), dtype="float32", device="cpu",
                       cache=CacheConfig(block_size=4, num_gpu_blocks_override=64),
                       speculative=SpeculativeConfig(method="mtp", num_speculative_tokens=2))
    engine = AsyncEngine(cfg)

    async def main():
        greedy = SamplingParams(temperature=0, max_tokens=STEPS, ignore_eos=True)

        async def collect(rid, prompt):
            return [t async for o in engine.generate(prompt, greedy, rid) for t in o.outputs[0].delta_token_ids]

        async def cancelled():
            async for _ in engine.generate(PROMPTS[3], SamplingParams(temperature=0, max_tokens=500,
                                                                      ignore_eos=True), "gone"):
                if engine.stats().spec_draft_tokens_total > 0:
                    return  # leaving the loop aborts the request

        results = await asyncio.gather(collect("a", PROMPTS[2]), cancelled())
        assert results[0] == expected[2]
        for _ in range(200):
            if engine.stats().num_free_blocks == engine.stats().num_total_blocks:
                break
            await asyncio.sleep(0.01)
        stats = engine.stats()
        await engine.shutdown(1)
        return stats

    stats = asyncio.run(main())
    assert stats.num_free_blocks == stats.num_total_blocks and stats.spec_draft_tokens_total > 0


def test_drafts_stop_at_the_context_limit(checkpoints):
    """A request that runs into max_model_len (here the model's max_position_embeddings, the rotary cache's
    length) with k = 3: no draft row is placed past it, and the tokens are plain greedy decoding's."""
    from vdeploy import LLM, SamplingParams
    from vdeploy.config import ModelConfig

    path, _, _, _ = checkpoints
    limit = ModelConfig.from_path(path).max_position_embeddings
    prompt = [(7 * i) % 290 + 3 for i in range(limit - 12)]
    params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    outs = []
    for spec in (None, {"method": "mtp", "num_speculative_tokens": 3}):
        with LLM(str(path), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=300,
                 speculative_config=spec) as llm:
            outs.append(llm.generate([prompt], params)[0].outputs[0])
    assert outs[0].token_ids == outs[1].token_ids and len(outs[1].token_ids) == 12
    assert outs[1].finish_reason == "length"
