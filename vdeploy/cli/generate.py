"""generate. (in progress)"""


def generate() -> None:
    """generate."""
    raise NotImplementedError
