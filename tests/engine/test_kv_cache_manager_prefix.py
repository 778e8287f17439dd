"""KV-cache manager: prefix hits (never the last prompt token), allocation failure, freeing."""

from vdeploy.engine.kv_cache_manager import KVCacheManager
from vdeploy.engine.request import Request
from vdeploy.engine.sampling_params import SamplingParams


def make_request(rid: str, tokens: list[int]) -> Request:
    return Request(rid, list(tokens), SamplingParams(max_tokens=4))


def admit(kv: KVCacheManager, req: Request) -> int:
    hits, num_hit = kv.get_computed_blocks(req)
    assert kv.allocate_slots(req, req.num_tokens - num_hit, hits) is not None
    req.num_computed_tokens = req.num_tokens
    return num_hit


def test_prefix_hit_covers_full_blocks_but_never_the_last_token():
    kv = KVCacheManager(num_blocks=16, block_size=4)
    first = make_request("a", range(12))  # 3 full blocks
    assert admit(kv, first) == 0
    # identical prompt: the last block holds the last token, so only 2 of 3 blocks may hit
    same = make_request("b", range(12))
    hits, num_hit = kv.get_computed_blocks(same)
    assert num_hit == 8
    assert [b.block_id for b in hits] == kv.get_block_ids("a")[:2]
    # a longer prompt sharing the prefix hits all 3 blocks
    longer = make_request("c", list(range(12)) + [99, 98])
    assert kv.get_computed_blocks(longer)[1] == 12
    # a different first block breaks the chain even if later tokens match
    other = make_request("d", [7] + list(range(1, 12)) + [5])
    assert kv.get_computed_blocks(other)[1] == 0


def test_hit_blocks_are_shared_with_reference_counts_and_survive_free():
    kv = KVCacheManager(num_blocks=8, block_size=4)
    a = make_request("a", range(9))
    admit(kv, a)
    b = make_request("b", range(9))
    assert admit(kv, b) == 8
    shared = kv.get_block_ids("a")[:2]
    assert kv.get_block_ids("b")[:2] == shared
    assert kv.pool.blocks[shared[0]].ref_cnt == 2
    kv.free(a)
    kv.free(b)
    assert kv.num_free_blocks == 8
    # freed blocks still serve as cache
    c = make_request("c", range(9))
    assert admit(kv, c) == 8
    assert kv.get_block_ids("c")[:2] == shared
    assert kv.prefix_stats.queries == 27 and kv.prefix_stats.hits == 16


def test_allocation_failure_returns_none_and_changes_nothing():
    kv = KVCacheManager(num_blocks=3, block_size=4)
    a = make_request("a", range(8))
    admit(kv, a)
    b = make_request("b", range(100, 110))  # needs 3 blocks, 1 free
    assert kv.allocate_slots(b, 10) is None
    assert kv.num_free_blocks == 1 and kv.get_block_ids("b") == []
    assert kv.allocate_slots(b, 4) is not None  # a chunk that fits
    assert kv.num_free_blocks == 0


def test_revived_cache_hits_count_against_free_blocks():
    kv = KVCacheManager(num_blocks=3, block_size=2)
    a = make_request("a", [1, 2, 3, 4, 5])
    admit(kv, a)  # 3 blocks
    kv.free(a)
    b = make_request("b", [1, 2, 3, 4, 5])
    hits, num_hit = kv.get_computed_blocks(b)
    assert num_hit == 4
    # reviving 2 free blocks leaves 1: the remaining token fits, 2 more blocks would not
    assert kv.allocate_slots(b, 5, hits) is None
    assert kv.allocate_slots(b, 1, hits) is not None
    assert kv.num_free_blocks == 0


def test_decode_allocates_a_block_only_at_block_boundaries():
    kv = KVCacheManager(num_blocks=4, block_size=4)
    r = make_request("r", range(4))
    admit(kv, r)
    assert kv.num_blocks_of("r") == 1
    r.output_token_ids.append(50)
    assert kv.allocate_slots(r, 1) != []  # token 4 needs block 2
    r.num_computed_tokens += 1
    for t in range(3):
        r.output_token_ids.append(60 + t)
        assert kv.allocate_slots(r, 1) == []
        r.num_computed_tokens += 1
    assert kv.num_blocks_of("r") == 2


def test_prefix_caching_disabled_reports_no_hits():
    kv = KVCacheManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    admit(kv, make_request("a", range(9)))
    assert kv.get_computed_blocks(make_request("b", range(9))) == ([], 0)
