"""bench. (in progress)"""


def bench() -> None:
    """bench."""
    raise NotImplementedError
