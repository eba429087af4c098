"""Errors whose message tells the user how to fix the problem.

Library code raises these; only the CLI turns them into one red line and an
exit code (2 for usage problems, 1 for failures), never a traceback.
"""


class GwqError(Exception):
    """A problem the user can fix; the message says how."""

    exit_code = 1


class UsageError(GwqError):
    """Bad arguments or unreadable inputs."""

    exit_code = 2
