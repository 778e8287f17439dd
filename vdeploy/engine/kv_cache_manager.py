"""The scheduler's only window onto KV memory.

Three questions, three calls: which of this request's blocks are already cached (`get_computed_blocks`), can it get
room for N more tokens (`allocate_slots`: the new blocks, or None = preempt someone), and it is done (`free`).
The block pool's data structures stay hidden behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vdeploy.engine.block_pool import BlockPool, KVBlock, hash_block_tokens
from vdeploy.engine.request import Request, RequestStatus



@dataclass
class PrefixCacheStats:
    queries: int = 0  # prompt tokens looked up at admission
    hits: int = 0  # of those, tokens served from the cache


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = BlockPool(num_blocks, enable_caching=enable_prefix_caching)
        self._req_blocks: dict[str, list[KVBlock]] = {}
        self._req_block_ids: dict[str, list[int]] = {}  # the same tables as block ids, for get_block_ids
        self._num_registered: dict[str, int] = {}  # leading blocks of a request already in the prefix cache
        # A block is registered in the prefix cache when the step that fills it is scheduled, before that step runs.
        # request -> [(the token count the block ends at, block)] registered by it whose step has not come back yet
        # (confirm_computed): an abort must forget them, as an interrupted step may never have written them
        self._unconfirmed: dict[str, list[tuple[int, KVBlock]]] = {}
        self.prefix_stats = PrefixCacheStats()

    @property
    def num_total_blocks(self) -> int:
        return self.pool.num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self.pool.num_free_blocks

    @property
    def usage(self) -> float:
        return self.pool.usage

    def get_computed_blocks(self, request: Request) -> tuple[list[KVBlock], int]:
        """The longest cached prefix of the request's known tokens, as (blocks, number of tokens).

        The hit never covers the last known token: its logits are needed to sample the next one, so at least one
        token is always computed."""
        if not self.enable_prefix_caching:
            return [], 0
        self._update_block_hashes(request)
        max_blocks = (request.num_tokens - 1) // self.block_size
        hits: list[KVBlock] = []
        for block_hash in request.block_hashes[:max_blocks]:
            block = self.pool.get_cached_block(block_hash)
            if block is None:
                break
            hits.append(block)
        return hits, len(hits) * self.block_size

    def allocate_slots(
        self, request: Request, num_new_tokens: int, new_computed_blocks: Sequence[KVBlock] = ()
    ) -> list[KVBlock] | None:
        """Make room for `num_new_tokens` more tokens after the request's computed ones (plus the prefix-cache hit
        `new_computed_blocks`, when the request is being admitted). Returns the newly allocated blocks, or None
        when the pool cannot provide them: nothing is changed then, and the caller preempts someone."""
        blocks = self._req_blocks.get(request.request_id)
        if blocks is not None and not new_computed_blocks:
            # fast path of a running request whose held blocks already have room (most decode steps)
            total_tokens = request.num_computed_tokens + num_new_tokens
            if total_tokens <= len(blocks) * self.block_size:
                if self.enable_prefix_caching:
                    self._register_full_blocks(request, blocks, total_tokens)
                return []
        num_computed = request.num_computed_tokens + len(new_computed_blocks) * self.block_size
        total_tokens = num_computed + num_new_tokens
        num_held = len(blocks) if blocks is not None else 0
        num_needed = -(-total_tokens // self.block_size) - num_held - len(new_computed_blocks)
        # Cache hits that are currently free leave the free list when we take them.
        revived = sum(1 for b in new_computed_blocks if b.ref_cnt == 0)
        if num_needed > self.pool.num_free_blocks - revived:
            return None

        if blocks is None:  # admitting
            # only a first admission looks up a prompt: a preempted request's recompute finds its own prompt and
            # output blocks, which would inflate the hit rate (and is not what usage reports as cached tokens); a
            # request scoring its prompt (prompt logprobs) computes every position and looks nothing up
            if request.num_preemptions == 0 and not request.needs_prompt_logprobs:
                self.prefix_stats.queries += request.num_tokens if self.enable_prefix_caching else 0
                self.prefix_stats.hits += len(new_computed_blocks) * self.block_size
            blocks = self._req_blocks[request.request_id] = []
            self._req_block_ids[request.request_id] = []
        self.pool.touch(new_computed_blocks)
        new_blocks = self.pool.get_new_blocks(num_needed) if num_needed > 0 else []
        # extended in place: a decode step (the common case) then costs O(new blocks), not O(all blocks)
        if new_computed_blocks or new_blocks:
            blocks.extend(new_computed_blocks)
            blocks.extend(new_blocks)
            self._req_block_ids[request.request_id].extend(
                b.block_id for b in (*new_computed_blocks, *new_blocks)
            )
        if self.enable_prefix_caching:
            self._register_full_blocks(request, blocks, total_tokens)
        return new_blocks

    def free(self, request: Request) -> None:
        blocks = self._req_blocks.pop(request.request_id, None)
        self._req_block_ids.pop(request.request_id, None)
        self._num_registered.pop(request.request_id, None)
        unconfirmed = self._unconfirmed.pop(request.request_id, ())
        if request.status is RequestStatus.FINISHED_ABORTED:
            # An abort is also how a failed or interrupted step ends its requests (LLM.generate), and that step may
            # never have written the blocks it registered: forget them rather than serve KV that was never
            # computed. (Aborting while a step is merely in flight only loses those blocks' reuse.) The request
            # still holds them, so each still carries the hash it registered.
            for _, block in unconfirmed:
                self.pool.uncache_block(block)
        if blocks:
            self.pool.free_blocks(reversed(blocks))

    def get_block_ids(self, request_id: str) -> list[int]:
        """A copy of the request's block table (a C-level list copy; the ids are kept alongside the blocks)."""
        return list(self._req_block_ids.get(request_id, ()))

    def block_ids_view(self, request_id: str) -> list[int]:
        """The request's block table itself, not a copy (the scheduler slices off what the workers lack)."""
        return self._req_block_ids.get(request_id, [])

    def num_blocks_of(self, request_id: str) -> int:
        return len(self._req_blocks.get(request_id, ()))

    def _update_block_hashes(self, request: Request) -> None:
        hashes = request.block_hashes
        bs = self.block_size
        for i in range(len(hashes), request.num_tokens // bs):
            parent = hashes[i - 1] if i > 0 else request.cache_salt
            hashes.append(hash_block_tokens(parent, request.token_ids_slice(i * bs, (i + 1) * bs)))

    def _register_full_blocks(self, request: Request, blocks: list[KVBlock], total_tokens: int) -> None:
        """Blocks become findable as soon as they are scheduled to be filled: a request admitted later in the same
        step may share them, because every layer stores the whole batch's keys/values before attending."""
        num_full = min(total_tokens, request.num_tokens) // self.block_size
        start = self._num_registered.get(request.request_id, 0)
        if num_full <= start:  # most decode steps: no block became full
            return
        self._update_block_hashes(request)
        registered = [((i + 1) * self.block_size, blocks[i]) for i in range(start, num_full)
                      if self.pool.cache_block(blocks[i], request.block_hashes[i])]
        self._num_registered[request.request_id] = max(start, num_full)
        if registered:
            self._unconfirmed.setdefault(request.request_id, []).extend(registered)

    def confirm_computed(self, request_id: str, num_tokens: int) -> None:
        """A step that computed the request's tokens up to `num_tokens` came back: the blocks ending there or
        before hold their KV."""
        pending = self._unconfirmed.get(request_id)
        if pending:
            pending[:] = [(end, block) for end, block in pending if end > num_tokens]
