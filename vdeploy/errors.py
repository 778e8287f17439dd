"""Known errors: one line plus a hint on the command line, no traceback (unless --debug / VDEPLOY_DEBUG=1)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


class VdeployError(Exception):
    """An error the user can act on. `hint` says what to do; `exit_code` follows the CLI convention."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(VdeployError):
    """Bad configuration: profile, flags, model config."""


class CheckpointError(VdeployError):
    """A checkpoint that cannot be used (missing, corrupt, unsupported)."""


class DoesNotFitError(VdeployError):
    """The memory planner says the model cannot be served on this hardware."""

    exit_code = EXIT_CHECK_FAILED


class DownloadError(VdeployError):
    exit_code = EXIT_CHECK_FAILED
