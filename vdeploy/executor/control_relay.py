"""The control channel across nodes: rank 0 (on the engine's node) reads each RankCall from its pipe and broadcasts
it to every rank over a gloo group; answers travel back over that group to rank 0, the only rank that replies on
its pipe. What crosses the network is schema'd msgpack (vdeploy.executor.relay_codec) or plain integer tensors,
never pickle: another machine's bytes are decoded into the engine's dataclasses or refused.

  setup calls (determine_num_kv_blocks, initialize_kv_cache, load_lora): every rank's value (an int or None) is
                                                              gathered to rank 0, which replies {global rank: value}
  execute:                                                    the driver (last stage, tensor rank 0) sends its
                                                              ModelRunnerOutput to rank 0, which replies with it
  shutdown:                                                   broadcast like any call; every rank then exits

Ranks other than 0 never read their pipe here; a watchdog thread exits the process when the pipe closes (the
node's host is gone), since the main thread may be waiting in a collective that would never return.
"""

from __future__ import annotations

import os
import threading

import torch

from vdeploy.executor.control import EXECUTE, RankCall, RankReply, decode, encode
from vdeploy.executor.relay_codec import decode_call, decode_output, encode_call, encode_output

RELAY_ROOT = 0


class ControlRelay:
    def __init__(self, group, rank: int, driver_rank: int):
        self.group, self.rank, self.driver_rank = group, rank, driver_rank

    def next_call(self, conn) -> RankCall:
        """The next call, on every rank (rank 0 reads it from the executor's pipe first)."""
        import torch.distributed as dist

        if self.rank == RELAY_ROOT:
            call = decode(conn.recv_bytes())  # pickled by this node's own executor, over a local pipe
            payload = encode_call(call)
            length = torch.tensor([len(payload)], dtype=torch.int64)
            dist.broadcast(length, src=RELAY_ROOT, group=self.group)
            data = torch.frombuffer(bytearray(payload), dtype=torch.uint8)  # [N]
            dist.broadcast(data, src=RELAY_ROOT, group=self.group)
            return call
        length = torch.empty(1, dtype=torch.int64)
        dist.broadcast(length, src=RELAY_ROOT, group=self.group)
        data = torch.empty(int(length.item()), dtype=torch.uint8)  # [N]
        dist.broadcast(data, src=RELAY_ROOT, group=self.group)
        return decode_call(data.numpy().tobytes())

    def answer(self, call: RankCall, value, conn) -> None:
        """Bring this rank's answer to rank 0, which replies to the executor."""
        import torch.distributed as dist

        if call.method == EXECUTE:
            if self.driver_rank != RELAY_ROOT:
                if self.rank == self.driver_rank:
                    self._send_bytes(encode_output(value), RELAY_ROOT)
                elif self.rank == RELAY_ROOT:
                    value = decode_output(self._recv_bytes(self.driver_rank))
            if self.rank == RELAY_ROOT:
                conn.send_bytes(encode(RankReply(rank=self.rank, ok=True, value=value)))
            return
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{call.method} answered {type(value).__name__}: setup answers cross nodes as int or None")
        # (is set, value): a fixed-size integer tensor per rank, nothing to decode but two numbers
        mine = torch.tensor([value is not None, value or 0], dtype=torch.int64)
        world = dist.get_world_size(self.group)
        gathered = [torch.empty(2, dtype=torch.int64) for _ in range(world)] if self.rank == RELAY_ROOT else None
        dist.gather(mine, gathered, dst=RELAY_ROOT, group=self.group)
        if self.rank == RELAY_ROOT:
            values = {rank: int(t[1]) if int(t[0]) else None for rank, t in enumerate(gathered)}
            conn.send_bytes(encode(RankReply(rank=self.rank, ok=True, value=values)))

    def _send_bytes(self, payload: bytes, dst: int) -> None:
        import torch.distributed as dist

        dist.send(torch.tensor([len(payload)], dtype=torch.int64), dst=dst, group=self.group)
        dist.send(torch.frombuffer(bytearray(payload), dtype=torch.uint8), dst=dst, group=self.group)

    def _recv_bytes(self, src: int) -> bytes:
        import torch.distributed as dist

        length = torch.empty(1, dtype=torch.int64)
        dist.recv(length, src=src, group=self.group)
        data = torch.empty(int(length.item()), dtype=torch.uint8)  # [N]
        dist.recv(data, src=src, group=self.group)
        return data.numpy().tobytes()

    def start_watchdog(self, conn) -> None:
        """Non-root ranks: exit as soon as the host's end of the pipe closes (or it writes: only a stop is sent)."""
        if self.rank == RELAY_ROOT:
            return

        def watch():
            try:
                conn.poll(None)
            except (OSError, EOFError):
                pass
            os._exit(0)

        threading.Thread(target=watch, name="vdeploy-host-watchdog", daemon=True).start()
