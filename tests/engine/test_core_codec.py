"""The engine-core channel's codec: messages round-trip through schema'd msgpack, outputs sent as deltas rebuild the
engine's cumulative RequestOutputs exactly (text held back and released, n > 1, logprobs), and anything that is
not a message of the protocol (a pickle, garbage, an oversized or cut frame) is refused."""

from __future__ import annotations

import io
import pickle

import pytest

from vdeploy.config import CacheConfig, EngineConfig
from vdeploy.engine import core_codec as wire
from vdeploy.engine.outputs import EngineStats
from vdeploy.engine.outputs import CompletionOutput, RequestOutput, TokenLogprobs
from vdeploy.engine.sampling_params import SamplingParams

STATS = EngineStats(1, 0, 0.5, 10, 20, 3, 1, 0, 12, 40)


def _frames(*messages) -> io.BytesIO:
    codec = wire.server_side_codec()
    return io.BytesIO(b"".join(codec.encode(m) for m in messages))


def test_messages_round_trip_with_their_dataclasses():
    cfg = EngineConfig(model="/m", dtype="float32", cache=CacheConfig(block_size=8))
    params = SamplingParams(n=2, temperature=0.7, stop=["x"], seed=5, logprobs=3)
    salted = wire.AddRequest("r2", [4], params, None, "tenant-a")
    stream = _frames(wire.Init(cfg), wire.AddRequest("r1", [1, 2, 3], params), salted, wire.AbortRequests(["r1"]),
                     wire.Shutdown())
    codec = wire.core_side_codec()
    got = []
    while (payload := wire.read_frame(stream)) is not None:
        got.append(codec.decode(payload))
    assert got == [wire.Init(cfg), wire.AddRequest("r1", [1, 2, 3], params), salted, wire.AbortRequests(["r1"]),
                   wire.Shutdown()]
    ready = wire.server_side_codec().decode(wire.core_side_codec().encode(
        wire.Ready(256, {"top_p": 0.9}, STATS, [2, 7]))[4:])
    assert ready == wire.Ready(256, {"top_p": 0.9}, STATS, [2, 7])


def _out(rid, completions, finished=False, prompt=(5, 6)):
    return RequestOutput(rid, list(prompt), completions, finished, 0, {"arrival_time": 1.0})


def test_deltas_rebuild_the_cumulative_outputs():
    # what the core sends (OutputKind.DELTA: text, token ids and logprobs hold only the new part) and what the
    # server's handlers must see (everything so far, and the deltas)
    lp = [TokenLogprobs(7, -0.5, [(7, -0.5), (8, -1.0)]), TokenLogprobs(9, -0.1, [(9, -0.1)]),
          TokenLogprobs(4, -0.2, [(4, -0.2)])]
    steps = [
        (_out("a", [CompletionOutput(0, "He", [7], "He", [7], lp[:1]), CompletionOutput(1, "Y", [3], "Y", [3], None)]),
         _out("a", [CompletionOutput(0, "He", [7], "He", [7], lp[:1]), CompletionOutput(1, "Y", [3], "Y", [3], None)])),
        # sample 0's text is held back (a possible stop string), sample 1 did not change this step
        (_out("a", [CompletionOutput(0, "", [9], "", [9], lp[1:2])]),
         _out("a", [CompletionOutput(0, "He", [7, 9], "", [9], lp[:2])])),
        # released later: the delta carries what was held back
        (_out("a", [CompletionOutput(0, "llo", [4], "llo", [4], lp[2:], "stop", "o"),
                    CompletionOutput(1, "es", [2], "es", [2], None, "length")], finished=True),
         _out("a", [CompletionOutput(0, "Hello", [7, 9, 4], "llo", [4], lp, "stop", "o"),
                    CompletionOutput(1, "Yes", [3, 2], "es", [2], None, "length")], finished=True)),
    ]
    encoder, decoder = wire.OutputEncoder(), wire.OutputDecoder()
    codec_out, codec_in = wire.core_side_codec(), wire.server_side_codec()
    for delta, cumulative in steps:
        message = wire.StepOutputs([encoder.encode(delta)], [], STATS, 1)
        received = codec_in.decode(codec_out.encode(message)[4:])
        assert decoder.decode(received.outputs[0]) == cumulative
    again = wire.StepOutputs([encoder.encode(steps[1][0])], [], STATS, 1)
    assert again.outputs[0].prompt_token_ids is not None  # "a" finished: a new request of that id starts over


def test_prompt_is_sent_once():
    encoder = wire.OutputEncoder()
    first = encoder.encode(_out("r", [CompletionOutput(0, "a", [1], "a", [1])], prompt=range(100)))
    later = encoder.encode(_out("r", [CompletionOutput(0, "b", [2], "b", [2])], prompt=range(100)))
    assert first.prompt_token_ids == list(range(100)) and later.prompt_token_ids is None
    assert later.outputs[0].delta_token_ids == [2] and later.outputs[0].delta_text == "b"


def test_prompt_logprobs_cross_once_and_stay_in_the_cumulative_outputs():
    scored = [None, TokenLogprobs(6, -1.5, [(6, -1.5), (2, -2.0)], rank=1)]
    first = RequestOutput("p", [5, 6], [CompletionOutput(0, "a", [1], "a", [1])], False, 0, {}, prompt_logprobs=scored)
    later = RequestOutput("p", [5, 6], [CompletionOutput(0, "b", [2], "b", [2], finish_reason="length")], True, 0, {})
    encoder, decoder = wire.OutputEncoder(), wire.OutputDecoder()
    codec_out, codec_in = wire.core_side_codec(), wire.server_side_codec()
    got = [decoder.decode(codec_in.decode(codec_out.encode(wire.StepOutputs([encoder.encode(o)], [], STATS, 1))[4:])
                          .outputs[0]) for o in (first, later)]
    assert got[0].prompt_logprobs == got[1].prompt_logprobs == scored  # the cumulative view keeps them


class _Exploit:
    def __reduce__(self):
        return (eval, ("__import__('os').system('false')",))


@pytest.mark.parametrize("payload", [pickle.dumps(_Exploit()), pickle.dumps({"type": "Shutdown"}), b"\xc1garbage",
                                     wire.server_side_codec().encode(wire.Shutdown())[4:] + b"x"])
def test_anything_but_a_protocol_message_is_refused(payload):
    with pytest.raises(wire.ProtocolError):
        wire.core_side_codec().decode(payload)


def test_a_core_message_is_not_accepted_as_a_command():
    ready = wire.core_side_codec().encode(wire.Ready(1, {}, STATS, []))[4:]
    with pytest.raises(wire.ProtocolError):
        wire.core_side_codec().decode(ready)


def test_broken_framing_ends_the_channel():
    with pytest.raises(wire.FramingError, match="refused a frame"):
        wire.read_frame(io.BytesIO((wire.MAX_FRAME_BYTES + 1).to_bytes(4, "big") + b"x"))
    with pytest.raises(wire.FramingError):
        wire.read_frame(io.BytesIO((10).to_bytes(4, "big") + b"short"))
    with pytest.raises(wire.FramingError):
        wire.read_frame(io.BytesIO(b"\x00\x00"))
    assert wire.read_frame(io.BytesIO(b"")) is None


def test_a_delta_consumer_gets_deltas_and_nothing_is_accumulated():
    from vdeploy.engine.outputs import OutputKind

    encoder, decoder = wire.OutputEncoder(), wire.OutputDecoder()
    decoder.start("d", OutputKind.DELTA)
    first = decoder.decode(encoder.encode(_out("d", [CompletionOutput(0, "He", [7], "He", [7])])))
    second = decoder.decode(encoder.encode(_out("d", [CompletionOutput(0, "y", [8], "y", [8], None, "stop")],
                                                finished=True)))
    assert (first.outputs[0].text, first.outputs[0].token_ids) == ("He", [7])
    assert (second.outputs[0].text, second.outputs[0].token_ids, second.prompt_token_ids) == ("y", [8], [5, 6])
    assert not decoder._totals and not decoder._delta  # a finished request leaves nothing behind
