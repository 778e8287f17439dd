"""Structured output with the engine core in its own process (what `vdeploy serve` runs): the guided request crosses
the msgspec channel, answers exactly as the in-thread engine does, and a bad grammar is a 400 from the core."""

from __future__ import annotations

import openai
import pytest
from server_harness import start_server
from test_server_engine_process import _config
from test_structured_output import POINTS, WEATHER, _json_schema


@pytest.fixture(scope="module")
def proc_server(tiny_model_dir):
    from vdeploy.engine.process_engine import ProcessAsyncEngine

    eng = ProcessAsyncEngine(_config(tiny_model_dir), model_name="tiny")
    srv = start_server(eng)
    yield srv
    srv.stop()
    eng.close()


def _ask(url):
    with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60) as c:
        schema = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "JSON"}], seed=5,
                                           temperature=1.0, max_tokens=160,
                                           response_format=_json_schema("points", POINTS))
        tool = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "weather"}], seed=6,
                                         temperature=1.0, max_tokens=120, tools=[WEATHER], tool_choice="required",
                                         parallel_tool_calls=False)
        call = tool.choices[0].message.tool_calls[0].function
        return schema.choices[0].message.content, (call.name, call.arguments), tool.choices[0].finish_reason


def test_engine_process_matches_in_thread_engine(proc_server, server):
    assert _ask(proc_server.url) == _ask(server.url)
    with openai.OpenAI(base_url=f"{proc_server.url}/v1", api_key="x", max_retries=0, timeout=60) as c:
        with pytest.raises(openai.BadRequestError, match="grammar"):
            c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=4,
                                      extra_body={"guided_grammar": "root ::= ("})
