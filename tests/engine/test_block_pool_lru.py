"""Block pool: reference counts, least-recently-freed eviction, cached blocks reusable until evicted."""

import pytest

from vdeploy.engine.block_pool import BlockPool, hash_block_tokens


def test_allocation_takes_blocks_in_free_order_and_counts_references():
    pool = BlockPool(4)
    a, b = pool.get_new_blocks(2)
    assert (a.block_id, b.block_id) == (0, 1)
    assert a.ref_cnt == b.ref_cnt == 1
    assert pool.num_free_blocks == 2
    pool.touch([a])
    assert a.ref_cnt == 2
    pool.free_blocks([a])
    assert a.ref_cnt == 1 and pool.num_free_blocks == 2  # still referenced: not free
    pool.free_blocks([a, b])
    assert pool.num_free_blocks == 4
    with pytest.raises(ValueError):
        pool.free_blocks([a])
    with pytest.raises(ValueError):
        pool.get_new_blocks(5)


def test_least_recently_freed_block_is_evicted_first():
    pool = BlockPool(3)
    blocks = pool.get_new_blocks(3)
    for i, block in enumerate(blocks):
        pool.cache_block(block, hash_block_tokens(None, [i]))
    # free in the order 2, 0, 1 -> eviction order 2, 0, 1
    pool.free_blocks([blocks[2]])
    pool.free_blocks([blocks[0]])
    pool.free_blocks([blocks[1]])
    assert pool.num_cached_blocks == 3
    (first,) = pool.get_new_blocks(1)
    assert first.block_id == 2
    assert first.block_hash is None  # its stale content left the cache
    assert pool.get_cached_block(hash_block_tokens(None, [2])) is None
    # block 0 is still findable and can be revived without allocation
    cached0 = pool.get_cached_block(hash_block_tokens(None, [0]))
    assert cached0 is blocks[0]
    pool.touch([cached0])
    assert pool.num_free_blocks == 1 and cached0.ref_cnt == 1
    (second,) = pool.get_new_blocks(1)
    assert second.block_id == 1


def test_chained_hash_depends_on_the_whole_prefix():
    h1 = hash_block_tokens(None, [1, 2])
    assert hash_block_tokens(h1, [3, 4]) != hash_block_tokens(hash_block_tokens(None, [9, 9]), [3, 4])
    assert hash_block_tokens(h1, [3, 4]) == hash_block_tokens(hash_block_tokens(None, [1, 2]), [3, 4])


def test_caching_disabled_never_finds_blocks():
    pool = BlockPool(2, enable_caching=False)
    (block,) = pool.get_new_blocks(1)
    pool.cache_block(block, b"x" * 16)
    assert pool.get_cached_block(b"x" * 16) is None


def test_reset_prefix_cache_only_when_idle():
    pool = BlockPool(2)
    (block,) = pool.get_new_blocks(1)
    pool.cache_block(block, b"y" * 16)
    assert not pool.reset_prefix_cache()
    pool.free_blocks([block])
    assert pool.reset_prefix_cache()
    assert pool.get_cached_block(b"y" * 16) is None
