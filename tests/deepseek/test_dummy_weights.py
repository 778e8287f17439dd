"""`--dummy-weights uniform` draws weights as vLLM's dummy loader does, so benchmarks against `vllm --load-format
dummy` run the same workload. With those weights a DeepSeek-V3/R1 router's logits (~1e-6) are far smaller than its
correction bias (~1e-3): every token picks the same experts, while the default normal weights spread the tokens.
A V2 router (softmax, no bias) ties in vLLM's bf16 softmax; zero router weights make the same tie here."""

from __future__ import annotations

import pytest
import torch

from tests.deepseek.deepseek_fixtures import PagedRunner, save_hf_model, tiny_v2_config, tiny_v3_config


@pytest.fixture(scope="module")
def tiny_v3(tmp_path_factory):
    path = tmp_path_factory.mktemp("v3")
    save_hf_model(tiny_v3_config(n_routed_experts=16, n_group=4, topk_group=2), path)
    return path


def _experts_chosen(path, style: str, monkeypatch) -> list[torch.Tensor]:
    """The expert ids of every MoE layer for 48 random tokens, through the real model with dummy weights."""
    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.models import deepseek
    from vdeploy.models.loader import load_model

    chosen: list[torch.Tensor] = []
    select = deepseek.ops.select_experts

    def recording(logits, bias, spec):
        weights, ids = select(logits, bias, spec)
        chosen.append(ids)
        return weights, ids

    monkeypatch.setattr(deepseek.ops, "select_experts", recording)
    cfg = ModelConfig.from_path(path)
    engine = EngineConfig(model=str(path), load_format="dummy", dummy_weights=style)
    model = load_model(engine, cfg, ParallelState(), "cpu", torch.float32, quiet=True)
    tokens = torch.randint(0, cfg.vocab_size, (48,), generator=torch.Generator().manual_seed(0)).tolist()
    logits = PagedRunner(model, cfg).step([(0, tokens, 0)])
    assert torch.isfinite(logits).all()
    return chosen


def test_uniform_dummy_weights_route_every_token_to_the_same_experts(tiny_v3, monkeypatch):
    chosen = _experts_chosen(tiny_v3, "uniform", monkeypatch)
    assert len(chosen) == 2  # the two MoE layers
    for ids in chosen:
        assert ids.unique().numel() == ids.shape[1]  # top-2: the same two experts for all 48 tokens


def test_uniform_dummy_weights_tie_a_softmax_router_as_vllms_bf16_softmax_does(tmp_path, monkeypatch):
    """vLLM's grouped_topk rounds the softmax of its dummy logits (~1e-5) to 1/E in bf16: every token gets the same
    k experts. The same tie here (zero router weights): k distinct experts, the same for all 48 tokens."""
    save_hf_model(tiny_v2_config(n_routed_experts=16), tmp_path)
    chosen = _experts_chosen(tmp_path, "uniform", monkeypatch)
    assert len(chosen) == 2
    for ids in chosen:
        assert ids.unique().numel() == ids.shape[1] == 3
        assert (ids.sort(dim=-1).values == ids[0].sort().values).all()
    with_normal = _experts_chosen(tmp_path, "normal", monkeypatch)
    assert len(with_normal) == 2 and all(ids.unique().numel() >= 8 for ids in with_normal)


def test_normal_dummy_weights_spread_tokens_over_the_experts(tiny_v3, monkeypatch):
    for ids in _experts_chosen(tiny_v3, "normal", monkeypatch):
        # of 16 (uniform: 2). One draw of weights and tokens: 10-14 here, depending on the parameters' creation order
        assert ids.unique().numel() >= 8


def test_uniform_fill_covers_every_float_tensor_within_its_bound():
    from vdeploy.models.loader import fill_dummy

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Embedding(3000, 23000 // 8 * 8))
    model[1].weight.data = model[1].weight.data.to(torch.float8_e4m3fn)  # a large fp8 tensor: filled slice-wise
    fill_dummy(model, seed=1, style="uniform")
    for param in model.parameters():
        bound = torch.tensor(1e-3).to(param.dtype).float()  # e4m3 rounds 1e-3 up to its smallest step, 2**-9
        values = param.float().abs()
        assert 0 < values.max() <= bound


def test_bench_roofline_counts_the_experts_uniform_weights_really_read(tiny_v3, monkeypatch):
    """With uniform weights a V3 batch reads one token's experts; the printed bound must say so (not 1.1x of it)."""
    from vdeploy.bench import hardware
    from vdeploy.bench.bench_roofline import decode_roofline
    from vdeploy.engine.llm import LLM

    monkeypatch.setattr(hardware, "copy_bandwidth", lambda *args, **kwargs: 1e11)  # the same bandwidth for both

    bounds, tied = {}, {}
    for style in ("normal", "uniform"):
        llm = LLM(str(tiny_v3), load_format="dummy", dummy_weights=style, device="cpu", dtype="float32",
                  max_model_len=64, max_num_seqs=8)
        try:
            roofline = decode_roofline(llm, 8, 16, 16, 1.0)
            bounds[style], tied[style] = roofline["decode_bound_tokens_per_s"], roofline["same_experts_for_every_token"]
        finally:
            llm.close()
    assert bounds["uniform"] > bounds["normal"]  # fewer expert bytes per step: a higher bound
    assert tied == {"normal": False, "uniform": True}  # and `vdeploy bench` says why
