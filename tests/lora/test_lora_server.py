"""LoRA through the OpenAI server with the engine in its own process (what `vdeploy serve` runs): adapters given at
start and loaded / unloaded at runtime (vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter bodies), listed in
/v1/models, chosen by `model` (answers equal HF + peft merged), and bad adapters refused with an OpenAI-style 4xx
that names the cause."""

from __future__ import annotations

import json
import shutil

import httpx
import openai
import pytest
from lora_testlib import MAX_TOKENS, PROMPTS, build_setup

from vdeploy.config import CacheConfig, EngineConfig, LoRAConfig, SchedulerConfig


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
    from server_harness import start_server, write_test_tokenizer

    from vdeploy.engine.process_engine import ProcessAsyncEngine

    root = tmp_path_factory.mktemp("lora-server")
    setup = build_setup(root)
    write_test_tokenizer(setup.model)  # decodes the answers; prompts go in as token ids of the tiny vocabulary
    config = EngineConfig(
        model=str(setup.model), dtype="float32", device="cpu",
        cache=CacheConfig(block_size=4, num_gpu_blocks_override=128),
        scheduler=SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=256, max_model_len=128),
        lora=LoRAConfig(enable_lora=True, max_loras=2, max_lora_rank=8,
                        lora_modules=(("sql", str(setup.adapters["sql"])),)))
    engine = ProcessAsyncEngine(config, model_name="tiny")
    server = start_server(engine)
    yield setup, server.url, root
    server.stop()
    engine.close()


def _completion(client: openai.OpenAI, model: str, prompt: list[int]) -> list[float]:
    """The greedy answer's per-token log-probabilities (the text of this tiny vocabulary is mostly partial UTF-8)."""
    out = client.completions.create(model=model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0, logprobs=0,
                                    extra_body={"ignore_eos": True})
    return out.choices[0].logprobs.token_logprobs


def _matches(ours: list[float], expected: tuple[list[int], list[float]]) -> bool:
    return len(ours) == MAX_TOKENS and all(abs(a - b) < 2e-4 for a, b in zip(ours, expected[1]))


@pytest.mark.timeout(180)
def test_runtime_load_serve_unload(served):
    setup, url, root = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
    assert {m.id for m in client.models.list().data} == {"tiny", "sql"}

    r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "chat", "lora_path": str(setup.adapters["chat"])})
    assert r.status_code == 200, r.text
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {"tiny", "sql", "chat"} and cards["chat"].parent == "tiny"
    assert httpx.get(f"{url}/v1/models/chat").json()["root"] == str(setup.adapters["chat"])

    for model, name in (("tiny", None), ("sql", "sql"), ("chat", "chat")):
        for i in (0, 2):
            assert _matches(_completion(client, model, PROMPTS[i]), setup.expected[(name, i)]), (model, i)
    # an answer names the adapter it came from, streamed or not, as vLLM's do
    assert client.completions.create(model="sql", prompt=PROMPTS[0], max_tokens=2).model == "sql"
    chunks = client.completions.create(model="chat", prompt=PROMPTS[1], max_tokens=2, stream=True)
    assert {chunk.model for chunk in chunks} == {"chat"}

    # both slots are taken
    r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "third", "lora_path": str(setup.adapters["chat"])})
    assert r.status_code == 400 and "slots are in use" in r.json()["error"]["message"]

    r = httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "chat", "lora_int_id": 2})
    assert r.status_code == 200, r.text
    assert {m.id for m in client.models.list().data} == {"tiny", "sql"}
    with pytest.raises(openai.NotFoundError) as info:  # 404, as OpenAI answers an unknown model
        _completion(client, "chat", PROMPTS[0])
    assert info.value.body["code"] == "model_not_found"
    r = httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "chat"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "lora_not_found"
    # the freed slot takes another adapter
    r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "chat2", "lora_path": str(setup.adapters["chat"])})
    assert r.status_code == 200, r.text
    assert _matches(_completion(client, "chat2", PROMPTS[1]), setup.expected[("chat", 1)])
    httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "chat2"}).raise_for_status()


def _variant(root, source, name: str, edit_config=None, tensors=None):
    """A copy of adapter `source` with its config edited or its weights replaced."""
    target = root / name
    shutil.copytree(source, target)
    if edit_config is not None:
        config = json.loads((target / "adapter_config.json").read_text())
        edit_config(config)
        (target / "adapter_config.json").write_text(json.dumps(config))
    if tensors is not None:
        from safetensors.torch import save_file

        save_file(tensors, str(target / "adapter_model.safetensors"))
    return target


@pytest.mark.timeout(120)
def test_bad_adapters_are_refused_with_the_cause(served):
    import torch

    setup, url, root = served
    source = setup.adapters["sql"]
    outside = root / "elsewhere"
    outside.mkdir()
    shutil.copy(source / "adapter_model.safetensors", outside / "weights.safetensors")
    escaping = _variant(root, source, "escaping")
    (escaping / "adapter_model.safetensors").unlink()
    (escaping / "adapter_model.safetensors").symlink_to(outside / "weights.safetensors")
    cases = {
        "rank": (_variant(root, source, "rank16", lambda c: c.update(r=16)), "above --max-lora-rank 8"),
        "target": (_variant(root, source, "lmhead", lambda c: c.update(target_modules=["q_proj", "lm_head"])),
                   "lm_head"),
        "mismatch": (_variant(root, source, "other-base", tensors={
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 64),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(48, 4)}),
            "does not fit this base model"),
        "outside": (escaping, "outside"),
        "missing": (root / "no-such-adapter", "is not a directory"),
        # malformed values never reach the engine's arithmetic (they used to kill the engine core: a 503 for all)
        "alpha": (_variant(root, source, "alpha-str", lambda c: c.update(lora_alpha="16")), "lora_alpha"),
        "targets": (_variant(root, source, "nested", lambda c: c.update(target_modules=[["q_proj"]])),
                    "target_modules"),
        "rslora": (_variant(root, source, "rslora", lambda c: c.update(use_rslora="yes")), "use_rslora"),
        "long-path": (root / ("a" * 5000), "cannot be used"),
    }
    not_utf8 = _variant(root, source, "not-utf8")
    (not_utf8 / "adapter_config.json").write_bytes(b'{"r": 4, "lora_alpha": "\xff\xfe"}')
    cases["utf8"] = (not_utf8, "cannot read")
    for case, (path, needle) in cases.items():
        r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": f"bad-{case}", "lora_path": str(path)})
        assert r.status_code == 400, (case, r.text)
        error = r.json()["error"]
        assert needle in error["message"] and error["code"] == "invalid_lora_adapter", (case, error)
    assert httpx.get(f"{url}/health").status_code == 200  # the engine lives on
    r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "tiny", "lora_path": str(source)})
    assert r.status_code == 400
    models = {m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]}
    assert not any(m.startswith("bad-") for m in models)
