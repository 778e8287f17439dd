from vdeploy.distributed.parallel_state import ParallelState

__all__ = ["ParallelState"]
