"""Shared fixtures for the server tests: one real engine (a tiny random-weight Llama checkpoint with a real
byte-level BPE tokenizer, on CPU) and servers on 127.0.0.1 ephemeral ports in background threads."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_harness import MAX_WAITING, metric_value, start_server, write_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    from vdeploy.config import CacheConfig, EngineConfig, SchedulerConfig
    from vdeploy.engine.async_engine import AsyncEngine

    cfg = EngineConfig(
        model=str(tiny_model_dir), dtype="float32", device="cpu", enforce_eager=True,
        cache=CacheConfig(block_size=16, num_gpu_blocks_override=256),
        scheduler=SchedulerConfig(max_num_seqs=32, max_num_batched_tokens=1024, max_model_len=256,
                                  max_waiting=MAX_WAITING),
    )
    eng = AsyncEngine(cfg, model_name="tiny")
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def server(engine):
    srv = start_server(engine)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def keyed_server(engine):
    """A second server over the same engine, with an API key (and its own metrics registry)."""
    srv = start_server(engine, api_key="sk-test-key")
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    import openai

    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture
def http(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture
def metric(server):
    """metric(name, labels=None, srv=server) -> the current value scraped from srv's /metrics."""
    import httpx

    def read(name: str, labels: str | None = None, srv=None) -> float:
        text = httpx.get(f"{(srv or server).url}/metrics", timeout=30).text
        return metric_value(text, name, labels)

    return read
