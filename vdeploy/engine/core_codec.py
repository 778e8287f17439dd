"""The wire format between the server process and the engine-core process: length-prefixed msgpack frames of
schema'd msgspec Structs. Nothing on this channel is ever unpickled: a frame that is not one of the messages below
(garbage, a pickle, a truncated frame) fails to decode and is refused.

Outputs travel as deltas. The engine core in its process reports OutputKind.DELTA outputs (only what each sample
gained this step, never the answer so far: a long answer costs no more a step than a short one); `OutputEncoder`
(core side) adds the prompt to a request's first message only; `OutputDecoder` (server side) keeps the running
totals and rebuilds the cumulative `RequestOutput`s the server's handlers read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import msgspec

from vdeploy.config import EngineConfig
from vdeploy.engine.outputs import EngineStats
from vdeploy.engine.outputs import CompletionOutput, OutputKind, RequestOutput, TokenLogprobs
from vdeploy.engine.sampling_params import SamplingParams

MAX_FRAME_BYTES = 256 << 20  # far above any real message (a 128k-token prompt is ~0.6 MB); bounds a bad prefix
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A frame that is not a valid message of this protocol (it is dropped, never interpreted)."""


class FramingError(ProtocolError):
    """The byte stream itself is broken (a bad length prefix, a cut frame): the channel cannot be resynchronised."""


# ---- server -> core ----------------------------------------------------------------------------------------------
class Init(msgspec.Struct, tag=True):
    config: EngineConfig


class AddRequest(msgspec.Struct, tag=True):
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    lora_name: Optional[str] = None  # a loaded LoRA adapter (None: the base model)
    cache_salt: Optional[str] = None  # prefix-cache blocks are shared only between requests of the same salt


class LoRACommand(msgspec.Struct, tag=True):
    """Load (path set) or unload (path None) a LoRA adapter; answered by one LoRAResult with the same call_id."""

    call_id: int
    name: str
    path: Optional[str] = None


class AbortRequests(msgspec.Struct, tag=True):
    request_ids: list[str]


class Shutdown(msgspec.Struct, tag=True):
    pass


# ---- core -> server ----------------------------------------------------------------------------------------------
class Ready(msgspec.Struct, tag=True):
    max_model_len: int
    generation_defaults: dict[str, Any]
    stats: EngineStats
    eos_token_ids: list[int]


class Failed(msgspec.Struct, tag=True):
    """The core could not start, or its step loop died; it exits right after sending this."""

    error_type: str
    message: str
    hint: Optional[str] = None
    during_startup: bool = False


class RequestError(msgspec.Struct):
    """One request refused by the core (QueueFull under a race, an invalid prompt); the engine goes on."""

    request_id: str
    error_type: str  # "QueueFull" | "ConfigError" | other VdeployError names
    message: str
    hint: Optional[str] = None


class WireCompletion(msgspec.Struct, array_like=True):
    index: int
    delta_text: str
    delta_token_ids: list[int]
    delta_logprobs: Optional[list[TokenLogprobs]]  # logprobs of delta_token_ids (None: not asked for)
    finish_reason: Optional[str]
    stop_reason: Union[str, int, None]


class WireOutput(msgspec.Struct, array_like=True):
    request_id: str
    prompt_token_ids: Optional[list[int]]  # only in the request's first message
    outputs: list[WireCompletion]
    finished: bool
    num_cached_tokens: int
    metrics: dict[str, float]
    prompt_logprobs: Optional[list[Optional[TokenLogprobs]]] = None  # once, when asked for and complete


class StepOutputs(msgspec.Struct, tag=True):
    """Everything one engine step produced, for all requests: one message (and one wake-up) per step."""

    outputs: list[WireOutput]
    errors: list[RequestError]
    stats: EngineStats
    num_adds_applied: int  # running total of samples (n per request) the core has taken in


class LoRAResult(msgspec.Struct, tag=True):
    call_id: int
    error_type: Optional[str] = None  # None: done
    message: str = ""
    hint: Optional[str] = None


ToCore = Union[Init, AddRequest, AbortRequests, LoRACommand, Shutdown]
FromCore = Union[Ready, Failed, StepOutputs, LoRAResult]


# ---- framing -----------------------------------------------------------------------------------------------------
class FrameCodec:
    """Typed msgpack encoding with a 4-byte big-endian length prefix. One per direction per process."""

    def __init__(self, receives: Any):
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(receives)

    def encode(self, message: msgspec.Struct) -> bytes:
        payload = self._encoder.encode(message)
        return _HEADER.pack(len(payload)) + payload

    def decode(self, payload: bytes) -> Any:
        try:
            return self._decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ProtocolError(f"refused a frame that is not a vdeploy engine message: {e}") from None


def read_frame(stream: Any) -> Optional[bytes]:
    """The next frame's payload from a binary file object (socket.makefile('rb')); None at a clean end of stream."""
    header = stream.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise FramingError("the channel closed in the middle of a frame header")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise FramingError(f"refused a frame of {size} bytes (limit {MAX_FRAME_BYTES})")
    payload = stream.read(size)
    if len(payload) < size:
        raise FramingError("the channel closed in the middle of a frame")
    return payload


def core_side_codec() -> FrameCodec:
    return FrameCodec(ToCore)


def server_side_codec() -> FrameCodec:
    return FrameCodec(FromCore)


# ---- outputs as deltas -------------------------------------------------------------------------------------------
class OutputEncoder:
    """Core side: the core's OutputKind.DELTA RequestOutputs -> WireOutputs (the prompt only in a request's first)."""

    def __init__(self) -> None:
        self._prompt_sent: set[str] = set()

    def encode(self, out: RequestOutput) -> WireOutput:
        first = out.request_id not in self._prompt_sent
        if out.finished:
            self._prompt_sent.discard(out.request_id)
        elif first:
            self._prompt_sent.add(out.request_id)
        wire = [WireCompletion(c.index, c.delta_text, c.delta_token_ids, c.logprobs, c.finish_reason, c.stop_reason)
                for c in out.outputs]
        return WireOutput(out.request_id, out.prompt_token_ids if first else None, wire, out.finished,
                          out.num_cached_tokens, out.metrics, out.prompt_logprobs)


@dataclass
class _Totals:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprobs] = field(default_factory=list)


@dataclass
class _RequestTotals:
    prompt_token_ids: list[int]
    samples: dict[int, _Totals] = field(default_factory=dict)
    prompt_logprobs: Optional[list[Optional[TokenLogprobs]]] = None


class OutputDecoder:
    """Server side: WireOutputs (deltas) -> RequestOutputs: cumulative (the text, token ids and logprobs so far), or
    for a request started as OutputKind.DELTA only the delta (nothing accumulated, nothing copied)."""

    def __init__(self) -> None:
        self._totals: dict[str, _RequestTotals] = {}
        self._delta: set[str] = set()  # requests whose consumer takes deltas

    def start(self, request_id: str, kind: OutputKind) -> None:
        if kind is OutputKind.DELTA:
            self._delta.add(request_id)

    def forget(self, request_id: str) -> None:
        """The request ended without a finished output (it was refused)."""
        self._totals.pop(request_id, None)
        self._delta.discard(request_id)

    def decode(self, wire: WireOutput) -> RequestOutput:
        totals = self._totals.get(wire.request_id)
        if totals is None:
            totals = self._totals[wire.request_id] = _RequestTotals(wire.prompt_token_ids or [])
        if wire.request_id in self._delta:
            outputs = [CompletionOutput.delta(c.index, c.delta_text, c.delta_token_ids, c.delta_logprobs,
                                              c.finish_reason, c.stop_reason) for c in wire.outputs]
            prompt_logprobs = wire.prompt_logprobs  # once, as the core sent them
        else:
            outputs = [self._completion(totals.samples.setdefault(c.index, _Totals()), c) for c in wire.outputs]
            if wire.prompt_logprobs is not None:
                totals.prompt_logprobs = wire.prompt_logprobs
            prompt_logprobs = totals.prompt_logprobs  # cumulative: in every output from then on
        if wire.finished:
            self.forget(wire.request_id)
        return RequestOutput(wire.request_id, totals.prompt_token_ids, outputs, wire.finished,
                             wire.num_cached_tokens, wire.metrics, prompt_logprobs)

    @staticmethod
    def _completion(totals: _Totals, c: WireCompletion) -> CompletionOutput:
        totals.text += c.delta_text
        totals.token_ids.extend(c.delta_token_ids)
        logprobs = None
        if c.delta_logprobs is not None:
            totals.logprobs.extend(c.delta_logprobs)
            logprobs = list(totals.logprobs)
        # copies: a consumer may keep an output while the totals grow under the next message
        return CompletionOutput(c.index, totals.text, list(totals.token_ids), c.delta_text, c.delta_token_ids,
                                logprobs, c.finish_reason, c.stop_reason)

    def forget_all(self) -> None:
        self._totals.clear()
        self._delta.clear()
