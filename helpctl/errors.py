"""Exit codes and the exception tree that the CLI's error boundary turns into them.

HelpctlError
├── UsageError            bad input or usage (exit 2)
│   └── ConfigError       a profile or setting is invalid (names file and line)
├── PartialResult         some of the work was done (exit 3)
├── AuthError             credentials missing, rejected or lacking permission (exit 4)
├── PreconditionFailed    a plan, case or state does not allow the step (exit 5)
└── ServiceError          an external service failed (exit 1)
    ├── ServiceTimeout
    ├── RateLimited
    └── NotFound
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    PARTIAL = 3
    AUTH = 4
    PRECONDITION = 5
    INTERRUPTED = 130


class HelpctlError(Exception):
    """An expected failure: printed as one line on stderr, never as a traceback.

    `hint` tells what to do next; `exit_code` is the process's exit status.
    """

    exit_code = ExitCode.FAILURE
    kind = "failure"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def as_dict(self) -> dict[str, object]:
        return {
            "error": self.kind,
            "message": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class UsageError(HelpctlError):
    exit_code = ExitCode.USAGE
    kind = "usage"


class ConfigError(UsageError):
    kind = "config"


class PartialResult(HelpctlError):
    exit_code = ExitCode.PARTIAL
    kind = "partial"


class AuthError(HelpctlError):
    exit_code = ExitCode.AUTH
    kind = "auth"


class PreconditionFailed(HelpctlError):
    exit_code = ExitCode.PRECONDITION
    kind = "precondition"


class ServiceError(HelpctlError):
    """An external service answered with an error or not at all.

    `service` names the source (platform, gitlab, ...); `status` is the HTTP status when one
    was received.
    """

    kind = "service"

    def __init__(
        self,
        message: str,
        *,
        service: str,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.service = service
        self.status = status


class ServiceTimeout(ServiceError):
    kind = "timeout"


class RateLimited(ServiceError):
    """The service rejected the request for now; `retry_after` is its wait in seconds, when given."""

    kind = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        service: str,
        retry_after: float | None = None,
        status: int | None = 429,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, service=service, status=status, hint=hint)
        self.retry_after = retry_after


class NotFound(ServiceError):
    kind = "not_found"
