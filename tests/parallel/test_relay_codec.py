"""What crosses the network between the ranks of a multi-node job is schema'd msgpack, never pickle: each relayed
call and the driver's step output round-trip into the engine's dataclasses, and a crafted pickle is refused without
being unpickled."""

from __future__ import annotations

import pickle

import pytest

from vdeploy.engine.outputs import ModelRunnerOutput, ScheduledRequest, SchedulerOutput, TokenLogprobs
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.executor.control import RankCall
from vdeploy.executor.relay_codec import (
    RelayProtocolError,
    decode_call,
    decode_output,
    encode_call,
    encode_output,
)
from vdeploy.lora.adapter import LoRAAdapter, LoRATensorPair


def test_every_relayed_call_and_the_step_output_round_trip():
    step = SchedulerOutput([ScheduledRequest("r0", [5, 6, -1], 3, [7, 8], True, SamplingParams(temperature=0.7, seed=3),
                                             penalty_token_ids=[1, 5], token_bitmask=b"\xff\x00\x01\x02")],
                           3, ["gone"], {"r0": 9})
    adapter = LoRAAdapter("sql", "/a", "/a/adapter_model.safetensors", 8, 2.0, ("q_proj",),
                          (LoRATensorPair(0, "q_proj", "a", "b"),))
    for call in (RankCall("execute", (step,)), RankCall("initialize_kv_cache", (128,)),
                 RankCall("load_lora", (1, adapter)), RankCall("determine_num_kv_blocks"), RankCall("shutdown")):
        assert decode_call(encode_call(call)) == call
    output = ModelRunnerOutput(["r0"], [11], [TokenLogprobs(11, -0.5, [(11, -0.5), (3, -1.5)])],
                               accepted_token_ids=[[11, 12]], draft_token_ids=[[4]], draft_seconds=0.25)
    assert decode_output(encode_output(output)) == output


def test_a_crafted_pickle_or_an_unknown_method_is_refused(tmp_path):
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Exploit())
    with pytest.raises(RelayProtocolError, match="not a vdeploy rank call"):
        decode_call(payload)
    with pytest.raises(RelayProtocolError, match="not a vdeploy ModelRunnerOutput"):
        decode_output(payload)
    assert not marker.exists()
    import msgspec

    with pytest.raises(RelayProtocolError, match="refused relayed call '__init__'"):
        decode_call(msgspec.msgpack.encode({"method": "__init__"}))
    with pytest.raises(ValueError, match="has no relay encoding"):
        encode_call(RankCall("profile_run", (1,)))
