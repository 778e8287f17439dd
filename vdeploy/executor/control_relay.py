"""The control channel across nodes: rank 0 (on the engine's node) reads each RankCall from its pipe and broadcasts
the same bytes to every rank over a gloo group; answers travel back over that group to rank 0, the only rank
that replies on its pipe.

  setup calls (determine_num_kv_blocks, initialize_kv_cache): every rank's value is gathered to rank 0, which
                                                              replies {global rank: value}
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

RELAY_ROOT = 0


class ControlRelay:
    def __init__(self, group, rank: int, driver_rank: int):
        self.group, self.rank, self.driver_rank = group, rank, driver_rank

    def next_call(self, conn) -> RankCall:
        """The next call, on every rank (rank 0 reads it from the executor's pipe first)."""
        import torch.distributed as dist

        if self.rank == RELAY_ROOT:
            payload = conn.recv_bytes()
            length = torch.tensor([len(payload)], dtype=torch.int64)
            dist.broadcast(length, src=RELAY_ROOT, group=self.group)
            data = torch.frombuffer(bytearray(payload), dtype=torch.uint8)  # [N]
            dist.broadcast(data, src=RELAY_ROOT, group=self.group)
            return decode(payload)
        length = torch.empty(1, dtype=torch.int64)
        dist.broadcast(length, src=RELAY_ROOT, group=self.group)
        data = torch.empty(int(length.item()), dtype=torch.uint8)  # [N]
        dist.broadcast(data, src=RELAY_ROOT, group=self.group)
        return decode(data.numpy().tobytes())

    def answer(self, call: RankCall, value, conn) -> None:
        """Bring this rank's answer to rank 0, which replies to the executor."""
        import torch.distributed as dist

        if call.method == EXECUTE:
            if self.driver_rank != RELAY_ROOT:
                if self.rank == self.driver_rank:
                    dist.send_object_list([value], dst=RELAY_ROOT, group=self.group)
                elif self.rank == RELAY_ROOT:
                    received = [None]
                    dist.recv_object_list(received, src=self.driver_rank, group=self.group)
                    value = received[0]
            if self.rank == RELAY_ROOT:
                conn.send_bytes(encode(RankReply(rank=self.rank, ok=True, value=value)))
            return
        gathered = [None] * dist.get_world_size(self.group) if self.rank == RELAY_ROOT else None
        dist.gather_object(value, gathered, dst=RELAY_ROOT, group=self.group)
        if self.rank == RELAY_ROOT:
            conn.send_bytes(encode(RankReply(rank=self.rank, ok=True, value=dict(enumerate(gathered)))))

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
