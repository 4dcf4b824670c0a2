"""User-facing errors: each carries an exit code and a one-line message (what, where, what to do)."""
from __future__ import annotations


class ReportgenError(Exception):
    exit_code = 1


class UsageError(ReportgenError):
    exit_code = 2


class InputDataError(ReportgenError):
    exit_code = 3


class WeightsUnavailable(ReportgenError):
    exit_code = 4


class OutputError(ReportgenError):
    exit_code = 5


class ResourceError(ReportgenError):
    """Out of (GPU) memory even after retrying at a smaller batch."""
    exit_code = 6


class GateFailed(ReportgenError):
    """The [gate]'s champion/challenger conditions are not met (the run itself succeeded)."""
    exit_code = 8
