"""The errors every layer may raise, and the exit codes the CLI turns them into. Imports nothing
of the worker: it is the bottom of the house."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Bad input on the command line: one clear line, exit 2."""


class DatabaseUnavailable(Exception):
    """The database cannot be reached or started; the message says which and why."""


class MigrationError(Exception):
    """The schema cannot be brought up to date; the message says why and what to do."""
