"""The small exception tree and exit statuses.

Library code raises `ShellfishError` subclasses; only the CLI turns them into a message on
stderr and an `ExitStatus`. Every message says what to do next.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    MODEL = 3  # model missing, corrupt or unsupported
    DAEMON = 4
    REMOTE = 5
    INTERRUPTED = 130


class ShellfishError(Exception):
    """Base of every error shellfish shows to a user as one clear line."""

    exit_status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} - {self.hint}" if self.hint else self.message


class UsageError(ShellfishError):
    exit_status = ExitStatus.USAGE


class ConfigError(ShellfishError):
    exit_status = ExitStatus.USAGE


class ModelError(ShellfishError):
    """A model is unknown, not installed, corrupt, or its files do not fit together."""

    exit_status = ExitStatus.MODEL


class ModelNotFound(ModelError):
    pass


class HashMismatch(ModelError):
    pass


class DownloadError(ModelError):
    pass


class PromptTooLong(ShellfishError):
    exit_status = ExitStatus.USAGE


class DaemonError(ShellfishError):
    exit_status = ExitStatus.DAEMON


class DaemonUnavailable(DaemonError):
    """No daemon answers on the socket (not running, stale socket, crashed)."""


class ProtocolError(DaemonError):
    pass


class RemoteError(ShellfishError):
    exit_status = ExitStatus.REMOTE


class Cancelled(ShellfishError):
    exit_status = ExitStatus.INTERRUPTED
