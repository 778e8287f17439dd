"""DeepSeek-V3 and V2 against HF transformers' own implementations on the same tiny random weights."""

import pytest
import torch

from tests.deepseek.deepseek_fixtures import (PagedRunner, convert_to_fp8, load_ours, save_hf_model,
                                              tiny_v2_config, tiny_v3_config)

PROMPTS = [[5, 17, 99, 3, 250, 41, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 2], [1, 2, 3]]


def hf_greedy(model, prompt, steps):
    """Greedy decoding by HF's full forward at each step (no EOS special-casing, no HF cache involved)."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(prompt):]


def ours_greedy(runner, sid, prompt, steps):
    logits = runner.step([(sid, prompt, 0)])
    tokens = [int(logits[0].argmax())]
    for i in range(steps - 1):
        logits = runner.step([(sid, [tokens[-1]], len(prompt) + i)])
        tokens.append(int(logits[0].argmax()))
    return tokens


@pytest.mark.parametrize("family", ["v3", "v2"])
def test_logits_and_greedy_match_hf(tmp_path, family):
    config = tiny_v3_config() if family == "v3" else tiny_v2_config()
    hf = save_hf_model(config, tmp_path)
    ours, cfg = load_ours(tmp_path)
    runner = PagedRunner(ours, cfg)
    # batched prefill of two prompts: last-token logits equal HF's
    logits = runner.step([(0, PROMPTS[0], 0), (1, PROMPTS[1], 0)])
    for i, prompt in enumerate(PROMPTS):
        with torch.no_grad():
            ref = hf(torch.tensor([prompt])).logits[0, -1].float()
        torch.testing.assert_close(logits[i], ref, rtol=1e-3, atol=1e-3)
    runner2 = PagedRunner(ours, cfg)
    assert ours_greedy(runner2, 0, PROMPTS[0], 12) == hf_greedy(hf, PROMPTS[0], 12)


def test_fp8_checkpoint_matches_hf_on_dequantized_weights(tmp_path):
    """R1-style block-FP8 checkpoint: our CPU path dequantizes once; HF loads the same dequantized weights."""
    config = tiny_v3_config(hidden_size=256, moe_intermediate_size=128, intermediate_size=256, q_lora_rank=128,
                            kv_lora_rank=128)
    save_hf_model(config, tmp_path / "bf", seed=3)
    import shutil

    shutil.copytree(tmp_path / "bf", tmp_path / "fp8")
    convert_to_fp8(tmp_path / "fp8")
    ours, cfg = load_ours(tmp_path / "fp8")
    assert cfg.quant is not None and cfg.quant.weight_block_size == (128, 128)
    # the HF reference gets exactly the dequantized weights
    from safetensors.torch import load_file, save_file

    from vdeploy_kernels.reference_deepseek import dequantize_weight_block

    tensors = load_file(tmp_path / "fp8" / "model.safetensors")
    dense = {}
    for name, t in tensors.items():
        if name.endswith("weight_scale_inv"):
            continue
        scale = tensors.get(name.replace(".weight", ".weight_scale_inv"))
        dense[name] = dequantize_weight_block(t, scale) if scale is not None and name.endswith(".weight") else t
    save_file(dense, tmp_path / "bf" / "model.safetensors", metadata={"format": "pt"})
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "bf", dtype=torch.float32).eval()
    runner = PagedRunner(ours, cfg)
    logits = runner.step([(0, PROMPTS[0], 0)])
    with torch.no_grad():
        ref = hf(torch.tensor([PROMPTS[0]])).logits[0, -1]
    torch.testing.assert_close(logits[0], ref, rtol=1e-3, atol=1e-3)
    assert ours_greedy(PagedRunner(ours, cfg), 0, PROMPTS[0], 8) == hf_greedy(hf, PROMPTS[0], 8)


def test_absorbed_mla_equals_naive_mla_with_chunked_prefill(tmp_path):
    save_hf_model(tiny_v3_config(), tmp_path)
    ours, cfg = load_ours(tmp_path)
    absorbed, naive = PagedRunner(ours, cfg), PagedRunner(ours, cfg, naive=True)
    prompt = PROMPTS[0]
    # chunked prefill (7 + rest) then two decode steps, through both paths
    for chunk in ([(0, prompt[:7], 0)], [(0, prompt[7:], 7)], [(0, [42], len(prompt))], [(0, [43], len(prompt) + 1)]):
        torch.testing.assert_close(absorbed.step(chunk), naive.step(chunk), rtol=1e-4, atol=1e-4)


def test_mixed_steps_decode_absorbed_and_prefill_expanded_equal_naive_mla(tmp_path):
    """A step of decodes (absorbed MLA) followed by an extend over a cached prefix and a fresh prefill (expanded
    MLA: contexts decompressed through kv_b_proj) gives the naive path's logits."""
    save_hf_model(tiny_v2_config(), tmp_path)
    ours, cfg = load_ours(tmp_path)
    fast, naive = PagedRunner(ours, cfg), PagedRunner(ours, cfg, naive=True)
    a, b, c = PROMPTS[0], PROMPTS[1], PROMPTS[0][::-1]
    steps = ([(0, a, 0)],
             [(0, [42], len(a)), (1, b[:4], 0)],
             [(0, [43], len(a) + 1), (1, b[4:], 4), (2, c, 0)],
             [(0, [44], len(a) + 2), (1, [9], len(b)), (2, [11], len(c))])
    for chunk in steps:
        torch.testing.assert_close(fast.step(chunk), naive.step(chunk), rtol=1e-4, atol=1e-4)
