"""Where `vdeploy run` gets its replies: a running local server (OpenAI streaming over HTTP, stdlib only), or an
in-process engine. Both yield ("reasoning" | "content", text) pieces, so the terminal side does not care which."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any, Iterator, Optional

Piece = tuple[str, str]


class ServerBackend:
    def __init__(self, url: str, model: str, api_key: Optional[str] = None):
        self.url, self.model = url.rstrip("/"), model
        self.api_key = api_key or os.environ.get("VDEPLOY_API_KEY")
        self.where = f"the server at {self.url}/v1"

    def stream(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> Iterator[Piece]:
        body = json.dumps({"model": self.model, "messages": messages, "stream": True, **sampling}).encode()
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.url}/v1/chat/completions", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 (a local server's URL)
            for raw in response:
                line = raw.decode("utf-8", errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise RuntimeError(event["error"].get("message", "server error"))
                for choice in event.get("choices", []):
                    delta = choice.get("delta") or {}
                    if delta.get("reasoning_content"):
                        yield "reasoning", delta["reasoning_content"]
                    if delta.get("content"):
                        yield "content", delta["content"]

    def close(self) -> None:
        pass


class EngineBackend:
    """vdeploy.LLM in this process; <think> blocks split as the server's deepseek_r1 parser does."""

    def __init__(self, model_path: str, name_hint: str, **engine_kwargs: Any):
        from vdeploy.config import ModelConfig
        from vdeploy.engine.llm import LLM
        from vdeploy.server.reasoning import ReasoningParser, default_reasoning_parser

        self.llm = LLM(model_path, **engine_kwargs)
        architecture = ModelConfig.from_path(model_path).architecture
        self.parser = ReasoningParser(default_reasoning_parser(f"{name_hint} {model_path}", architecture))
        self.where = "an in-process engine (no server found for it)"

    def stream(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> Iterator[Piece]:
        from vdeploy.engine.sampling_params import SamplingParams

        values = {**self.llm.core.generation_defaults, **{k: v for k, v in sampling.items() if v is not None}}
        splitter = self.parser.new_stream()
        for out in self.llm.generate_stream(self.llm.encode_chat(messages), SamplingParams(**values)):
            yield from _pieces(splitter.feed(out.outputs[0].delta_text or ""))
        yield from _pieces(splitter.finish())

    def close(self) -> None:
        self.llm.close()


def _pieces(delta: Any) -> Iterator[Piece]:
    if delta.reasoning:
        yield "reasoning", delta.reasoning
    if delta.content:
        yield "content", delta.content
