"""KV memory under DP attention: one block pool per tensor rank, each holding the latent cache of the requests that
rank serves. The scheduler sees one KVCacheManager: each call goes to the pool of the request's rank, and a request
is given the rank with the most free blocks when it is admitted (again after a preemption, when it holds none).
Block ids are per pool: each rank's ScheduledRequests address its own cache."""

from __future__ import annotations

from collections.abc import Sequence

from vdeploy.engine.block_pool import KVBlock
from vdeploy.engine.kv_cache_manager import KVCacheManager, PrefixCacheStats
from vdeploy.engine.request import Request


class DPAttentionKVManager:
    def __init__(self, num_ranks: int, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.pools = [KVCacheManager(num_blocks, block_size, enable_prefix_caching) for _ in range(num_ranks)]
        self._rank_of: dict[str, int] = {}

    @property
    def num_total_blocks(self) -> int:
        return sum(p.num_total_blocks for p in self.pools)

    @property
    def num_free_blocks(self) -> int:
        return sum(p.num_free_blocks for p in self.pools)

    @property
    def usage(self) -> float:
        return 1.0 - self.num_free_blocks / self.num_total_blocks if self.num_total_blocks else 0.0

    @property
    def prefix_stats(self) -> PrefixCacheStats:
        return PrefixCacheStats(sum(p.prefix_stats.queries for p in self.pools),
                                sum(p.prefix_stats.hits for p in self.pools))

    def requests_per_rank(self) -> list[int]:
        counts = [0] * len(self.pools)
        for rank in self._rank_of.values():
            counts[rank] += 1
        return counts

    def _pool(self, request: Request) -> KVCacheManager:
        if request.request_id not in self._rank_of:  # admission: the emptiest pool, then the fewest requests
            load = self.requests_per_rank()
            rank = max(range(len(self.pools)), key=lambda r: (self.pools[r].num_free_blocks, -load[r], -r))
            self._rank_of[request.request_id] = request.dp_rank = rank
        return self.pools[request.dp_rank]

    def get_computed_blocks(self, request: Request) -> tuple[list[KVBlock], int]:
        return self._pool(request).get_computed_blocks(request)

    def allocate_slots(self, request: Request, num_new_tokens: int,
                       new_computed_blocks: Sequence[KVBlock] = ()) -> list[KVBlock] | None:
        pool = self._pool(request)
        blocks = pool.allocate_slots(request, num_new_tokens, new_computed_blocks)
        if blocks is None and pool.num_blocks_of(request.request_id) == 0:
            del self._rank_of[request.request_id]  # not admitted: it may go to another rank next time
        return blocks

    def free(self, request: Request) -> None:
        rank = self._rank_of.pop(request.request_id, None)
        if rank is not None:
            self.pools[rank].free(request)

    def get_block_ids(self, request_id: str) -> list[int]:
        return self.pools[self._rank_of[request_id]].get_block_ids(request_id)

    def block_ids_view(self, request_id: str) -> list[int]:
        rank = self._rank_of.get(request_id)
        return self.pools[rank].block_ids_view(request_id) if rank is not None else []

    def num_blocks_of(self, request_id: str) -> int:
        rank = self._rank_of.get(request_id)
        return self.pools[rank].num_blocks_of(request_id) if rank is not None else 0

    def confirm_computed(self, request_id: str, num_tokens: int) -> None:
        rank = self._rank_of.get(request_id)
        if rank is not None:
            self.pools[rank].confirm_computed(request_id, num_tokens)
