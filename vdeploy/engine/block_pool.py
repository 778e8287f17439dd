"""The pool of KV-cache blocks: reference counts, an LRU free list and the prefix-cache index.

A block with ref_cnt 0 sits in the free list but keeps its hash, so a later request with the same prefix can take it
back ("cached but free"). New allocations take blocks from the front of the free list, i.e. the least recently freed
first, and only then drop their stale hash: cached content lives as long as memory allows.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def hash_block_tokens(parent_hash: bytes | None, token_ids: Sequence[int]) -> bytes:
    """Chained hash of one full block: it identifies the block's tokens *and* everything before them.

    A cryptographic digest (not Python's 64-bit hash) because a collision would silently serve another prompt's KV.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(parent_hash or b"\x00" * 16)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


def salted(parent_hash: bytes | None, salt: str) -> bytes:
    """The start of a request's hash chain with a caller's cache salt mixed in (after a LoRA adapter's salt, if
    any): its blocks then match only requests that give the same salt."""
    h = hashlib.blake2b(digest_size=16)
    h.update(parent_hash or b"\x00" * 16)
    h.update(b"cache_salt\0" + salt.encode())
    return h.digest()


@dataclass(eq=False)
class KVBlock:
    block_id: int
    ref_cnt: int = 0
    block_hash: bytes | None = None  # set once the block is full and registered in the prefix cache

    def __repr__(self) -> str:
        return f"KVBlock({self.block_id}, ref={self.ref_cnt}, cached={self.block_hash is not None})"


class BlockPool:
    def __init__(self, num_blocks: int, enable_caching: bool = True):
        if num_blocks < 1:
            raise ValueError(f"a KV block pool needs at least one block, got {num_blocks}")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        # block_id -> block; insertion order = eviction order (front = least recently freed)
        self._free: OrderedDict[int, KVBlock] = OrderedDict((b.block_id, b) for b in self.blocks)
        self._cached: dict[bytes, KVBlock] = {}

    @property
    def num_free_blocks(self) -> int:
        """Blocks that can be handed out now (including free blocks that still hold cached content)."""
        return len(self._free)

    @property
    def usage(self) -> float:
        return 1.0 - len(self._free) / self.num_blocks

    def get_new_blocks(self, n: int) -> list[KVBlock]:
        if n > len(self._free):
            raise ValueError(f"cannot allocate {n} blocks, only {len(self._free)} free")
        out = []
        for _ in range(n):
            _, block = self._free.popitem(last=False)
            self._drop_from_cache(block)
            block.ref_cnt = 1
            out.append(block)
        return out

    def get_cached_block(self, block_hash: bytes) -> KVBlock | None:
        return self._cached.get(block_hash) if self.enable_caching else None

    def touch(self, blocks: Iterable[KVBlock]) -> None:
        """Take a reference on blocks found in the prefix cache (reviving them if they were free)."""
        for block in blocks:
            if block.ref_cnt == 0:
                del self._free[block.block_id]
            block.ref_cnt += 1

    def free_blocks(self, blocks: Iterable[KVBlock]) -> None:
        """Drop one reference per block. Pass a request's blocks tail first: the free list then evicts a
        sequence's last blocks before its first ones, which other requests are likelier to share."""
        for block in blocks:
            if block.ref_cnt <= 0:
                raise ValueError(f"double free of {block}")
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self._free[block.block_id] = block

    def cache_block(self, block: KVBlock, block_hash: bytes) -> bool:
        """Register a full block under its chained hash; True when this call registered it. An existing entry with
        the same hash wins (the new block simply stays uncached), so the index always maps a hash to one block."""
        if not self.enable_caching or block.block_hash is not None:
            return False
        if block_hash in self._cached:
            return False
        block.block_hash = block_hash
        self._cached[block_hash] = block
        return True

    def uncache_block(self, block: KVBlock) -> None:
        """Make a block unfindable by prefix lookups (its holders keep using it); its content may be invalid."""
        self._drop_from_cache(block)

    def _drop_from_cache(self, block: KVBlock) -> None:
        if block.block_hash is not None:
            if self._cached.get(block.block_hash) is block:
                del self._cached[block.block_hash]
            block.block_hash = None

    @property
    def num_cached_blocks(self) -> int:
        return len(self._cached)

    def reset_prefix_cache(self) -> bool:
        """Forget all cached content; only possible when no block is in use."""
        if len(self._free) != self.num_blocks:
            return False
        for block in self.blocks:
            block.block_hash = None
        self._cached.clear()
        return True
