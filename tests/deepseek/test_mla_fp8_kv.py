"""FP8 (e4m3) latent cache for DeepSeek's MLA on a tiny DeepSeek-V3, CPU (the torch twins): the absorbed decode and
the expanded prefill read the fp8 cache (one kv_scale per layer); logits within e4m3 tolerance of the fp32 cache,
the absorbed path equal to the naive oracle over the same fp8 cache, engine greedy tokens and twice the blocks."""

import pytest
import torch

from tests.deepseek.deepseek_fixtures import PagedRunner, load_ours, save_hf_model, tiny_v3_config
from tests.models.test_fp8_kv_cache import assert_greedy_agrees, engine_run

PROMPTS = [[5, 17, 99, 3, 250, 41, 7, 8, 9, 10, 11, 12], [200, 201, 202], [60, 61, 62, 63, 64]]
LOGIT_ATOL = 0.15  # measured max 0.04 on these weights; e4m3 keeps 3 mantissa bits of each cached latent


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("v3_fp8kv")
    save_hf_model(tiny_v3_config(), path)
    return path


def _runner(path, kv_dtype: torch.dtype, kv_scale: float = 1.0, naive: bool = False) -> PagedRunner:
    model, cfg = load_ours(path)
    for layer in model.model.layers:
        layer.self_attn.kv_scale = kv_scale
    runner = PagedRunner(model, cfg, naive=naive)
    runner.kv = [torch.zeros_like(c, dtype=kv_dtype) for c in runner.kv]
    return runner


def _steps(runner: PagedRunner) -> list[torch.Tensor]:
    """Prefill two prompts; then a mixed step (two decodes first: absorbed; an extend and a fresh prompt: expanded)."""
    a, b, c = PROMPTS
    first = runner.step([(0, a[:8], 0), (1, b, 0)])
    mixed = runner.step([(0, [a[8]], 8), (1, [4], 3), (0 + 2, c, 0)])
    extend = runner.step([(0, a[9:], 9)])  # an extend over a cached fp8 prefix
    return [first, mixed, extend]


@pytest.mark.parametrize("kv_scale", [1.0, 0.05])
def test_fp8_latent_cache_logits_within_tolerance_of_fp32_cache(checkpoint, kv_scale):
    ref = _steps(_runner(checkpoint, torch.float32))
    fp8 = _steps(_runner(checkpoint, torch.float8_e4m3fn, kv_scale))
    for a, b in zip(ref, fp8):
        assert torch.isfinite(b).all()
        assert 0 < (a - b).abs().max().item() < LOGIT_ATOL


def test_absorbed_and_expanded_paths_equal_the_naive_oracle_over_the_same_fp8_cache(checkpoint):
    fast = _steps(_runner(checkpoint, torch.float8_e4m3fn, 0.05))
    naive = _steps(_runner(checkpoint, torch.float8_e4m3fn, 0.05, naive=True))
    for a, b in zip(fast, naive):
        assert (a - b).abs().max().item() < 1e-5  # the same dequantized latents: only float rounding differs


def test_engine_with_fp8_latent_cache_agrees_and_holds_twice_the_blocks(checkpoint):
    ref, _ = engine_run(checkpoint, "auto", PROMPTS, steps=5)
    _, blocks_bf16 = engine_run(checkpoint, "bfloat16", PROMPTS[:1], steps=1)
    fp8, blocks8 = engine_run(checkpoint, "fp8", PROMPTS, steps=5, max_num_batched_tokens=8)  # chunked prefill too
    assert blocks8 == 2 * blocks_bf16
    assert assert_greedy_agrees(ref, fp8, near_tie=2 * LOGIT_ATOL) >= 10


def test_checkpoint_k_scale_sets_the_latent_scale(checkpoint, tmp_path):
    from tests.models.test_fp8_kv_cache import _with_tensors

    path = _with_tensors(checkpoint, tmp_path / "scaled", {"model.layers.1.self_attn.k_scale": torch.tensor(0.05),
                                                           "model.layers.1.self_attn.v_scale": torch.tensor(9.0)})
    model, _ = load_ours(path)
    assert [layer.self_attn.kv_scale for layer in model.model.layers] == [1.0, pytest.approx(0.05), 1.0]
