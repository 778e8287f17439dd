"""vLLM's cache_salt: prefix-cache blocks are shared only between requests that give the same salt (a tenant cannot
learn from timing whether another tenant sent a prompt), through the server; without a salt, sharing is as before."""

PROMPT = "Tenant data: " + "alpha beta gamma delta " * 3


def _cached(client, **extra) -> int:
    reply = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=1, extra_body=extra or None)
    details = reply.usage.prompt_tokens_details
    return details.cached_tokens if details else 0


def test_only_requests_with_the_same_salt_share_prefix_blocks(client):
    assert _cached(client, cache_salt="tenant-a") == 0  # first sight of this prompt under this salt
    assert _cached(client, cache_salt="tenant-a") > 0  # the same tenant hits its own blocks
    assert _cached(client, cache_salt="tenant-b") == 0  # another tenant does not
    assert _cached(client) == 0  # nor does a request without a salt
    assert _cached(client) > 0


def test_n_samples_of_a_new_prompt_report_no_cached_tokens(client):
    """The prompt is computed once for all n samples: the later samples' hits on blocks the first one just filled
    are not a cache hit of the request (billing reads this field)."""
    reply = client.completions.create(model="tiny", prompt="Fresh words " * 9, max_tokens=1, n=3, temperature=1.0)
    details = reply.usage.prompt_tokens_details
    assert (details.cached_tokens if details else 0) == 0

