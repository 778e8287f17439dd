"""When the engine itself fails (a GPU error, a dead rank), clients get a 503 in OpenAI's shape instead of a hung
connection, /health turns 503 so the load balancer stops sending traffic, and the in-thread server stays up
(`vdeploy serve` then exits 1 for its supervisor: tests/server/test_serve_lifecycle.py)."""

from __future__ import annotations

import httpx
from server_harness import start_server


class ExplodingExecutor:
    """A model that fails on its first step."""

    def __init__(self):
        from vdeploy.engine.kv_cache_spec import KVCacheSpec

        self.kv_cache_spec = KVCacheSpec("mha", 1, 16, 1, 8, "float32")

    def determine_num_kv_blocks(self) -> int:
        return 32

    def initialize_kv_cache(self, num_blocks: int) -> None:
        pass

    def execute(self, sched):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def shutdown(self) -> None:
        pass


def test_engine_failure_is_503_and_unhealthy(tiny_model_dir):
    from vdeploy.config import EngineConfig, SchedulerConfig
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.engine.engine_core import EngineCore

    cfg = EngineConfig(model=str(tiny_model_dir), device="cpu", scheduler=SchedulerConfig(max_model_len=256))
    engine = AsyncEngine(cfg, core=EngineCore(cfg, executor=ExplodingExecutor()), model_name="tiny")
    srv = start_server(engine)
    try:
        assert httpx.get(f"{srv.url}/health").status_code == 200
        body = {"model": "tiny", "prompt": "Hello", "max_tokens": 4}
        failed = httpx.post(f"{srv.url}/v1/completions", json=body, timeout=30)
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "engine_dead"
        health = httpx.get(f"{srv.url}/health")
        assert health.status_code == 503 and health.json()["error"]["code"] == "engine_dead"
        # later requests are refused at once, not left hanging
        again = httpx.post(f"{srv.url}/v1/chat/completions", timeout=30,
                           json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": True})
        assert again.status_code == 503
    finally:
        srv.stop()
        engine.close()
