"""serve. (in progress)"""


def serve() -> None:
    """serve."""
    raise NotImplementedError
