"""What crosses the network between the ranks of a multi-node job besides tensors: each call rank 0 relays to every
rank, and the driver's step output on its way back to rank 0 (vdeploy.executor.control_relay). Schema'd msgpack
(msgspec) decoded into the engine's own dataclasses, never pickle: the bytes come from another machine, and a frame
that is not one of these messages fails to decode instead of running code.

The pipes between a node's host and its own ranks stay pickled (vdeploy.executor.control): they never leave the
machine.
"""

from __future__ import annotations

from typing import Optional

import msgspec

from vdeploy.engine.outputs import ModelRunnerOutput, SchedulerOutput
from vdeploy.executor.control import EXECUTE, RANK_METHODS, SHUTDOWN, RankCall
from vdeploy.lora.adapter import LoRAAdapter


class RelayProtocolError(ValueError):
    """Bytes from another rank that are not a message of this protocol (refused, never interpreted)."""


class RelayedCall(msgspec.Struct, forbid_unknown_fields=True):
    """A RankCall with its arguments typed per method (a RankCall's args are an untyped tuple)."""

    method: str
    scheduler_output: Optional[SchedulerOutput] = None  # execute
    num_blocks: Optional[int] = None  # initialize_kv_cache
    lora_slot: Optional[int] = None  # load_lora
    lora_adapter: Optional[LoRAAdapter] = None  # load_lora


# each relayed method -> the RelayedCall fields that carry its arguments, in RankCall.args order
_ARG_FIELDS: dict[str, tuple[str, ...]] = {
    EXECUTE: ("scheduler_output",),
    "initialize_kv_cache": ("num_blocks",),
    "load_lora": ("lora_slot", "lora_adapter"),
    "determine_num_kv_blocks": (),
    SHUTDOWN: (),
}

_ENCODER = msgspec.msgpack.Encoder()
_CALLS = msgspec.msgpack.Decoder(RelayedCall)
_OUTPUTS = msgspec.msgpack.Decoder(ModelRunnerOutput)


def encode_call(call: RankCall) -> bytes:
    fields = _ARG_FIELDS.get(call.method)
    if fields is None or len(call.args) != len(fields):
        raise ValueError(f"rank method {call.method!r} with {len(call.args)} argument(s) has no relay encoding")
    return _ENCODER.encode(RelayedCall(call.method, **dict(zip(fields, call.args))))


def decode_call(payload: bytes) -> RankCall:
    try:
        wire = _CALLS.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise RelayProtocolError(f"refused a relayed call that is not a vdeploy rank call: {e}") from None
    fields = _ARG_FIELDS.get(wire.method)
    args = None if fields is None else tuple(getattr(wire, name) for name in fields)
    if args is None or any(arg is None for arg in args):
        known = ", ".join(sorted(RANK_METHODS | {SHUTDOWN}))
        raise RelayProtocolError(f"refused relayed call {wire.method!r}: not one of {known} with its arguments")
    return RankCall(wire.method, args)


def encode_output(output: ModelRunnerOutput) -> bytes:
    return _ENCODER.encode(output)


def decode_output(payload: bytes) -> ModelRunnerOutput:
    try:
        return _OUTPUTS.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise RelayProtocolError(f"refused a step output that is not a vdeploy ModelRunnerOutput: {e}") from None
