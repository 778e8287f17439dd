"""The prefix-free prefill path (fresh_prefill_attention.py: K/V read from this step's contiguous k / v) against the
torch twin, under the interpreter, alone and routed by paged_attention beside decodes and prefix requests.

fp16/fp32 only (the interpreter's tl.dot mishandles bf16 operands). new_kv is taken from the cache at the batch's
slots, i.e. exactly what the attention layer just stored there.
"""

import pytest
import torch

from vdeploy_kernels import reference
from vdeploy_kernels.decode_attention import DecodeConfig
from vdeploy_kernels.fresh_prefill_attention import FreshPrefillConfig, fresh_prefill_attention
from vdeploy_kernels.paged_attention import count_fresh, paged_attention
from vdeploy_kernels.paged_batch import make_paged_batch
from vdeploy_kernels.prefill_attention import PrefillConfig

SMALL_FRESH = FreshPrefillConfig(block_m=16, block_n=16, pack=1, num_warps=4, num_stages=1)
SMALL_PREFILL = PrefillConfig(block_m=16, block_n=16, num_warps=4, num_stages=1)
SMALL_DECODE = DecodeConfig(block_n=16, num_splits=2, num_warps=4, num_stages=1)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def stored_kv(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, v) [T, Hk, D] of this step's rows, read back from the cache slots they were stored at."""
    _, _, _, hk, d = batch.kv_cache.shape
    slots = batch.meta.slot_mapping
    return batch.kv_cache[0].reshape(-1, hk, d)[slots], batch.kv_cache[1].reshape(-1, hk, d)[slots]


def run(batch, fresh_config=SMALL_FRESH, new_kv=None):
    d = batch.q.shape[-1]
    kv = stored_kv(batch) if new_kv is None else new_kv
    out = paged_attention(batch.q, batch.kv_cache, batch.meta, d**-0.5, decode_config=SMALL_DECODE,
                          prefill_config=SMALL_PREFILL, new_kv=kv, fresh_config=fresh_config)
    ref = reference.paged_attention(batch.q, batch.kv_cache, batch.meta, d**-0.5)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    return out, ref


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("head_dim", [64, 128, 96])
def test_fresh_prompts_match_twin(group, head_dim):
    # ragged prompts: shorter than a tile, tile-aligned, and crossing tiles unaligned
    gen = torch.Generator().manual_seed(group * 100 + head_dim)
    lens = [5, 16, 37]
    batch = make_paged_batch(lens, lens, num_heads=2 * group, num_kv_heads=2, head_dim=head_dim, block_size=16,
                             dtype=torch.float16, generator=gen)
    assert count_fresh(batch.meta) == (3, 0)
    out, ref = run(batch)
    assert rel_err(out, ref) < 2e-3


def test_fresh_path_reads_new_kv_not_the_pages():
    # with the pages overwritten, a right answer can only come from new_kv
    gen = torch.Generator().manual_seed(7)
    batch = make_paged_batch([20, 9], [20, 9], num_heads=4, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float32, generator=gen)
    kv = tuple(x.clone() for x in stored_kv(batch))
    ref = reference.paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125)
    batch.kv_cache.fill_(float("nan"))
    out = paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125, new_kv=kv, fresh_config=SMALL_FRESH)
    assert rel_err(out, ref) < 1e-5


DEVICE_TMA = dict(tma=True, device_tma=True)  # descriptors made in the kernel (the H100 table's choice)


@pytest.mark.parametrize("tma", [False, True, "device"])
@pytest.mark.parametrize("group", [1, 4, 8])
def test_mixed_batch_decodes_prefix_and_fresh(group, tma):
    # decodes, an extend over a cached prefix, fresh prompts around it: two launches, each skips the other's
    gen = torch.Generator().manual_seed(group)
    q_lens, seq_lens = [1, 1, 23, 9, 40, 3], [7, 30, 23, 50, 40, 3]
    batch = make_paged_batch(q_lens, seq_lens, num_heads=2 * group, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float16, generator=gen)
    assert count_fresh(batch.meta) == (3, 1)
    options = DEVICE_TMA if tma == "device" else dict(tma=tma)
    out, ref = run(batch, fresh_config=FreshPrefillConfig(16, 16, 1, 4, 1, **options))
    starts = batch.meta.query_start_loc.tolist()
    for a, b in zip(starts[:-1], starts[1:]):  # per request: one bad request cannot hide in the norm
        assert rel_err(out[a:b], ref[a:b]) < 2e-3


@pytest.mark.parametrize("cfg", [
    FreshPrefillConfig(8, 16, 2, 4, 1),  # GQA packing, query block shorter than the key tile
    FreshPrefillConfig(4, 16, 4, 4, 1),  # the whole group in one program
    FreshPrefillConfig(32, 16, 1, 4, 1),  # query block longer than the key tile: two diagonal tiles
    FreshPrefillConfig(16, 16, 3, 4, 1),  # a pack that does not divide the group falls back to 1
    FreshPrefillConfig(16, 16, 1, 4, 1, tma=True),  # K/V through descriptors; tail tiles read the next request
    FreshPrefillConfig(8, 16, 2, 4, 1, tma=True),
    FreshPrefillConfig(16, 16, 1, 4, 1, tma=True, device_tma=True),  # descriptors made in the kernel
    FreshPrefillConfig(8, 16, 2, 4, 1, tma=True, device_tma=True),  # the H100 table's form (packed heads)
    FreshPrefillConfig(16, 32, 1, 4, 1, tma=True, device_tma=True),  # key tile longer than the query block
    FreshPrefillConfig(16, 16, 1, 4, 1, device_tma=True),  # without tma: ignored, strided pointers
])
def test_configs_agree(cfg):
    gen = torch.Generator().manual_seed(11)
    batch = make_paged_batch([33, 6, 17], [33, 6, 17], num_heads=8, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float32, generator=gen)
    out, ref = run(batch, fresh_config=cfg)
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("tma", [False, True])  # descriptors need power-of-two heads: falls back to pointers
@pytest.mark.parametrize("head_dim", [80, 8])
def test_padded_head_dims(head_dim, tma):
    # head dims that are not a power of two (80) or below the smallest dot tile (8): channel bounds checks
    gen = torch.Generator().manual_seed(head_dim)
    batch = make_paged_batch([19, 4], [19, 4], num_heads=6, num_kv_heads=3, head_dim=head_dim, block_size=16,
                             dtype=torch.float32, generator=gen)
    out, ref = run(batch, fresh_config=FreshPrefillConfig(16, 16, 1, 4, 1, tma=tma))
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("tma", [False, True, "device"])
def test_strided_views_as_in_the_fused_projection(tma):
    # q, k, v are views into one [T, (H + 2 Hk) * D] projection output in the model
    gen = torch.Generator().manual_seed(12)
    h, hk, d, lens = 4, 2, 32, [13, 21]
    batch = make_paged_batch(lens, lens, num_heads=h, num_kv_heads=hk, head_dim=d, block_size=16,
                             dtype=torch.float32, generator=gen)
    k, v = stored_kv(batch)
    fused = torch.cat([batch.q.reshape(-1, h * d), k.reshape(-1, hk * d), v.reshape(-1, hk * d)], dim=1)
    batch.q = fused[:, : h * d].view(-1, h, d)
    views = (fused[:, h * d : (h + hk) * d].view(-1, hk, d), fused[:, (h + hk) * d :].view(-1, hk, d))
    options = DEVICE_TMA if tma == "device" else dict(tma=tma)
    out, ref = run(batch, new_kv=views, fresh_config=FreshPrefillConfig(16, 16, 1, 4, 1, **options))
    assert rel_err(out, ref) < 1e-5


def test_falls_back_to_pages_when_new_kv_cannot_be_used():
    # another dtype than the cache (an fp8 cache stores quantized values) or unknown host lengths: pages only
    gen = torch.Generator().manual_seed(13)
    batch = make_paged_batch([12], [12], num_heads=4, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float32, generator=gen)
    k, v = stored_kv(batch)
    wrong = (torch.full_like(k, float("nan")).half(), torch.full_like(v, float("nan")).half())
    ref = reference.paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125)
    out = paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125, prefill_config=SMALL_PREFILL, new_kv=wrong)
    assert rel_err(out, ref) < 1e-5
    batch.meta.query_lens_host = None
    garbage = (torch.full_like(k, float("nan")), torch.full_like(v, float("nan")))
    out = paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125, prefill_config=SMALL_PREFILL, new_kv=garbage)
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("cfg", [SMALL_FRESH, FreshPrefillConfig(16, 16, 1, 4, 1, **DEVICE_TMA)])
def test_direct_call_leaves_prefix_requests_untouched(cfg):
    gen = torch.Generator().manual_seed(14)
    batch = make_paged_batch([10, 8], [10, 30], num_heads=4, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float32, generator=gen)
    k, v = stored_kv(batch)
    out = torch.zeros(18, 4, 64)
    fresh_prefill_attention(batch.q, k, v, out, batch.meta.query_start_loc, batch.meta.seq_lens, 0, 2, 10, 0.125,
                            cfg)
    ref = reference.paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125)
    assert rel_err(out[:10], ref[:10]) < 1e-5
    assert out[10:].abs().max().item() == 0.0


def test_tuned_table_is_picked_up_and_ignored_for_short_prompts(tmp_path, monkeypatch):
    # what the engine does on a GPU whose table the sweep wrote: no GPU needed to look it up
    from vdeploy_kernels import tuned_tables
    from vdeploy_kernels.fresh_prefill_attention import default_fresh_config
    from vdeploy_kernels.prefill_attention import default_prefill_config
    from vdeploy_kernels.prefill_attention_configs import KIND, config_name

    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    monkeypatch.setattr(tuned_tables, "device_name", lambda index: "NVIDIA H200")
    tuned_tables.load_table.cache_clear()
    folder = tmp_path / "kernel_configs" / KIND
    folder.mkdir(parents=True)
    fresh = {"block_m": 64, "block_n": 128, "pack": 2, "num_warps": 8, "num_stages": 3}
    paged = {"block_m": 128, "block_n": 128, "num_warps": 8, "num_stages": 2}
    (folder / config_name("fresh", 128, 4, torch.bfloat16, "NVIDIA H200")).write_text(f'{{"4096": {fresh}}}'
                                                                                       .replace("'", '"'))
    (folder / config_name("paged", 128, 4, torch.bfloat16, "NVIDIA H200")).write_text(f'{{"2048": {paged}}}'
                                                                                       .replace("'", '"'))
    cuda = torch.device("cuda", 0)
    try:
        assert default_fresh_config(128, 4, torch.bfloat16, cuda, 3000) == FreshPrefillConfig(**fresh)
        assert default_prefill_config(128, cuda, 8192, 4, torch.bfloat16) == PrefillConfig(**paged)
        # short prompts and other shapes keep the heuristic
        assert default_fresh_config(128, 4, torch.bfloat16, cuda, 40).block_m != 64
        assert default_fresh_config(128, 8, torch.bfloat16, cuda, 4096) != FreshPrefillConfig(**fresh)
        assert default_prefill_config(128, cuda, 8192) == default_prefill_config(128, cuda, 8192, 4, torch.float16)
    finally:
        tuned_tables.load_table.cache_clear()


def test_table_entries_with_removed_or_unknown_fields():
    # an earlier sweep wrote every config with "warp_specialize": false, "lazy_rescale": false: still read; a removed
    # option turned on, or a field the config does not know, is refused with the reason
    from vdeploy_kernels.fresh_prefill_attention import fresh_config_from_table

    entry = {"block_m": 64, "block_n": 128, "device_tma": True, "num_stages": 3, "num_warps": 8, "pack": 2,
             "tma": True}
    expected = FreshPrefillConfig(64, 128, 2, 8, 3, tma=True, device_tma=True)
    assert fresh_config_from_table(entry) == expected
    assert fresh_config_from_table(dict(entry, warp_specialize=False, lazy_rescale=False)) == expected
    with pytest.raises(ValueError, match="removed from the kernel"):
        fresh_config_from_table(dict(entry, warp_specialize=True))
    with pytest.raises(ValueError, match="not fields of FreshPrefillConfig"):
        fresh_config_from_table(dict(entry, block_k=64))


def test_shipped_h100_table_builds_a_config():
    import json
    from pathlib import Path

    from vdeploy_kernels.fresh_prefill_attention import fresh_config_from_table

    folder = Path(__file__).resolve().parents[2] / "kernels" / "configs" / "prefill_attention"
    for path in folder.glob("fresh-*.json"):
        for entry in json.loads(path.read_text()).values():
            fresh_config_from_table(entry)
    h100 = json.loads((folder / "fresh-D128-G4-bfloat16-NVIDIA_H100_80GB_HBM3.json").read_text())
    assert fresh_config_from_table(h100["4096"]) == FreshPrefillConfig(64, 128, 2, 8, 3, tma=True, device_tma=True)
