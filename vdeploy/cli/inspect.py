"""inspect-shards. (in progress)"""


def inspect_shards() -> None:
    """inspect-shards."""
    raise NotImplementedError
