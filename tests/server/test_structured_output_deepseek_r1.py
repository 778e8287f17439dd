"""Structured output with DeepSeek-R1's real tokenizer and template (its generation prompt pre-fills `<think>`): the
reasoning stays free and only the answer after `</think>` is constrained.

The stand-in model plays a fixed reasoning (ending in R1's `</think>` token), then samples from seeded random logits
with vdeploy's real sampler, which applies the engine's grammar masks: the answer is whatever the grammar lets random
logits say, so it validates only if the masks are right, over the real 129,280-id vocabulary."""

from __future__ import annotations

import json

import jsonschema
import pytest
from server_harness import start_server
from test_reasoning_deepseek_r1 import R1_REASONING, deepseek_dir  # noqa: F401  (a fixture)

SCHEMA = {"type": "object", "properties": {
    "city": {"enum": ["Paris", "Rome"]}, "population": {"type": "integer", "minimum": 0, "maximum": 99999999},
    "landmarks": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "maxLength": 10}}},
    "required": ["city", "population", "landmarks"], "additionalProperties": False}
VOCAB = 129280


class ReasonThenSampleExecutor:
    """Every request: the scripted reasoning tokens, then tokens sampled from random logits by the real Sampler."""

    def __init__(self, script: list[int]):
        import torch

        from vdeploy.engine.kv_cache_spec import KVCacheSpec
        from vdeploy.worker.sampler import Sampler

        self.kv_cache_spec = KVCacheSpec("mla", 1, 16, 1, 8, "float32")
        self.script = script
        self.sampler = Sampler(VOCAB, (1,), torch.device("cpu"), seed=0)
        self.masked_steps: list[int] = []  # output index of each row that came with a grammar mask
        self._gen = torch.Generator().manual_seed(0)

    def determine_num_kv_blocks(self) -> int:
        return 64

    def initialize_kv_cache(self, num_blocks: int) -> None:
        pass

    def execute(self, sched):
        import torch

        from vdeploy.engine.outputs import ModelRunnerOutput

        rows = [r for r in sched.requests if r.sample]
        self.masked_steps += [r.num_output_tokens for r in rows if r.token_bitmask is not None]
        free = [r for r in rows if r.num_output_tokens >= len(self.script)]  # past the script: the sampler's turn
        sampled = {}
        if free:  # (a [N, 129280] sampling pass is the slow part on a CPU: only for the rows that need it)
            logits = torch.randn(len(free), VOCAB, generator=self._gen)
            sampled = dict(zip((r.req_id for r in free), self.sampler(logits, free).sampled_token_ids))
        tokens = [sampled.get(r.req_id, self.script[min(r.num_output_tokens, len(self.script) - 1)]) for r in rows]
        return ModelRunnerOutput(req_ids=[r.req_id for r in rows], sampled_token_ids=tokens)

    def shutdown(self) -> None:
        pass


@pytest.fixture(scope="module")
def r1_client(deepseek_dir):  # noqa: F811
    import openai

    from vdeploy.config import CacheConfig, EngineConfig, ModelConfig, SchedulerConfig
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.engine.engine_core import EngineCore
    from vdeploy.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_dir(deepseek_dir)
    script = tokenizer.encode(R1_REASONING + "\n", add_special_tokens=False) + [tokenizer.token_to_id("</think>")]
    model_cfg = ModelConfig.from_dict({
        "architectures": ["DeepseekV3ForCausalLM"], "vocab_size": VOCAB, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
        "max_position_embeddings": 4096, "bos_token_id": 0, "eos_token_id": 1,
    })
    cfg = EngineConfig(model=str(deepseek_dir), device="cpu", cache=CacheConfig(block_size=16),
                       scheduler=SchedulerConfig(max_model_len=1024))
    executor = ReasonThenSampleExecutor(script)
    core = EngineCore(cfg, model_config=model_cfg, executor=executor, tokenizer=tokenizer)
    engine = AsyncEngine(cfg, core=core, model_name="deepseek-r1")
    srv = start_server(engine, served_model_names=("deepseek-r1",), reasoning_parser="deepseek_r1")
    try:
        with openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=120) as client:
            yield client, executor, len(script)
    finally:
        srv.stop()
        engine.close()


def test_r1_reasoning_free_and_answer_schema_valid(r1_client):
    client, executor, num_reasoning = r1_client
    for _ in range(2):
        r = client.chat.completions.create(
            # greedy over fresh random logits each step (a 129,280-id top-p sort per token is slow on a CPU)
            model="deepseek-r1", messages=[{"role": "user", "content": "Describe a capital city."}], temperature=0,
            max_tokens=200, response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}})
        msg = r.choices[0].message
        assert msg.reasoning_content == R1_REASONING  # the template opened <think>: the output holds only </think>
        jsonschema.validate(json.loads(msg.content, strict=False), SCHEMA)
        assert r.choices[0].finish_reason == "stop"
    # no mask while thinking (the </think> token is the last scripted one); every answer token was masked
    assert executor.masked_steps and min(executor.masked_steps) == num_reasoning


def test_r1_named_tool_call_after_reasoning(r1_client):
    client, _, _ = r1_client
    tool = {"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}}
    r = client.chat.completions.create(
        model="deepseek-r1", messages=[{"role": "user", "content": "Look up a capital."}], max_tokens=200, temperature=0,
        tools=[tool], tool_choice={"type": "function", "function": {"name": "lookup"}})
    choice = r.choices[0]
    assert choice.message.reasoning_content == R1_REASONING and choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "lookup"
    jsonschema.validate(json.loads(call.function.arguments, strict=False), SCHEMA)


R1_CALL = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>lookup\n```json\n"
           '{"city": "Rome", "population": 2800000, "landmarks": ["Colosseum"]}\n```<｜tool▁call▁end｜>'
           "<｜tool▁calls▁end｜>")


def test_r1_auto_tool_call_in_native_format_whole_and_streamed(r1_client, deepseek_dir):  # noqa: F811
    from vdeploy.engine.tokenizer import Tokenizer

    client, executor, _ = r1_client
    tokenizer = Tokenizer.from_dir(deepseek_dir)
    script = executor.script
    executor.script = (script + tokenizer.encode("\n\n" + R1_CALL, add_special_tokens=False) + [1])
    tool = {"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}}
    history = [{"role": "user", "content": "Population of Rome?"}]
    try:
        r = client.chat.completions.create(model="deepseek-r1", messages=history, max_tokens=300, tools=[tool])
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.reasoning_content == R1_REASONING
        assert choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.function.name == "lookup"
        assert json.loads(call.function.arguments)["landmarks"] == ["Colosseum"]
        deltas, reasoning, finish = [], "", None
        for chunk in client.chat.completions.create(model="deepseek-r1", messages=history, max_tokens=300,
                                                    tools=[tool], stream=True):
            if chunk.choices:
                d = chunk.choices[0].delta
                reasoning += getattr(d, "reasoning_content", None) or ""
                deltas += d.tool_calls or []
                finish = chunk.choices[0].finish_reason or finish
        assert finish == "tool_calls" and reasoning == R1_REASONING
        # the call's first delta names it (arguments ""), the next ones carry its arguments: joined, the same call
        assert (deltas[0].function.name, deltas[0].function.arguments) == ("lookup", "") and deltas[0].id
        assert {d.index for d in deltas} == {0} and not any(d.function.name for d in deltas[1:])
        assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
        # the call and its result go back through R1's template on the next turn
        history += [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                    {"role": "tool", "tool_call_id": call.id, "content": '{"population": 2800000}'}]
        executor.script = script + tokenizer.encode("Rome has 2.8 million people.", add_special_tokens=False) + [1]
        r = client.chat.completions.create(model="deepseek-r1", messages=history, max_tokens=300, tools=[tool])
        assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == "Rome has 2.8 million people."
    finally:
        executor.script = script
