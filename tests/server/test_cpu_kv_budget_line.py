"""serve's memory line on CPU quotes the KV cache the engine really allocates (issue 16: it said "room for 854,639
KV tokens (22 GiB of RAM)" beside "KV cache 364 blocks of 16 tokens"): the fixed CPU budget, in tokens."""

from __future__ import annotations

from dataclasses import replace


def test_cpu_memory_line_quotes_the_kv_budget_the_engine_allocates(tiny_model_dir):
    from vdeploy.config import CacheConfig, EngineConfig, ModelConfig
    from vdeploy.env.hardware import detect_hardware
    from vdeploy.env.host import detect_host
    from vdeploy.server.deployment import check_memory
    from vdeploy.worker.model_runner import kv_cache_spec_for

    model_cfg = ModelConfig.from_path(tiny_model_dir)
    for budget in (256 << 20, 3 << 20):
        cfg = EngineConfig(model=str(tiny_model_dir), device="cpu", cache=CacheConfig(cpu_kv_cache_bytes=budget))
        note = check_memory(model_cfg, cfg, detect_hardware(), detect_host(), tiny_model_dir)
        spec = kv_cache_spec_for(cfg, model_cfg)  # what the CPU memory profile divides the budget by
        tokens = budget // spec.bytes_per_block * spec.block_size
        assert f"KV budget {budget >> 20} MiB = {tokens:,} tokens" in note, note
        fp16 = replace(cfg, cache=replace(cfg.cache, kv_cache_dtype="float16"))
        assert f"= {2 * tokens:,} tokens" in check_memory(model_cfg, fp16, detect_hardware(), detect_host(),
                                                          tiny_model_dir)
