"""download. (in progress)"""


def download() -> None:
    """download."""
    raise NotImplementedError
