"""The control channel between the executor and its rank processes: one duplex pipe per rank carrying pickled
dataclasses. Every step's SchedulerOutput is pickled once and the same bytes are written to every rank.

Requests are `RankCall`s. Replies are `RankReply`s: setup calls are answered by every rank; `execute` only by
the driver, the rank that samples (tensor rank 0 of the last pipeline stage; rank 0 without stages) — other ranks
write to their pipe only to report an error, so anything readable on another rank's pipe during a step is a
failure. Across nodes the engine talks to rank 0 only, which relays every call and the driver's reply
(control_relay).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

# A step of 8192 prompt tokens with block tables pickles to well under 1 MiB; anything near this limit means a
# runaway request list and would stall every rank on the pipe.
MAX_CONTROL_PAYLOAD_BYTES = 256 << 20

EXECUTE = "execute"
SHUTDOWN = "shutdown"
# the ModelRunner methods a rank may be asked to run, and whether every rank answers
RANK_METHODS = {"determine_num_kv_blocks", "initialize_kv_cache", "load_lora", EXECUTE}


@dataclass
class RankCall:
    method: str
    args: tuple = ()


@dataclass
class RankReply:
    rank: int
    ok: bool
    value: Any = None
    error: str | None = None  # "ExceptionType: message" when not ok
    traceback: str | None = None
    user_error: UserErrorInfo | None = None  # set when the rank raised a VdeployError (bad config, checkpoint)


@dataclass
class UserErrorInfo:
    """A VdeployError from a rank, carried field by field (its pickled form would lose the hint)."""

    module: str
    qualname: str
    message: str
    hint: str | None
    exit_code: int


def user_error_info(error: BaseException) -> UserErrorInfo | None:
    """The fields of a VdeployError, to rebuild it in another process; None for any other exception."""
    from vdeploy.errors import VdeployError

    if not isinstance(error, VdeployError):
        return None
    cls = type(error)
    return UserErrorInfo(cls.__module__, cls.__qualname__, error.message, error.hint, error.exit_code)


class PayloadTooLargeError(ValueError):
    pass


def encode(obj: Any, limit: int = MAX_CONTROL_PAYLOAD_BYTES) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > limit:
        raise PayloadTooLargeError(
            f"control message of {len(payload) / 2**20:.1f} MiB exceeds the {limit / 2**20:.0f} MiB limit"
        )
    return payload


def decode(payload: bytes) -> Any:
    return pickle.loads(payload)
