"""Exceptions that the command line turns into one-line messages instead of tracebacks.

`UsageError` is a user mistake (bad argument, bad file): exit code 2.
`RunFailed` is a run that started and could not go on (non-finite loss, out of memory): exit code 1.
"""


class RartsError(Exception):
    """Base class of errors shown to the user as one line."""

    exit_code = 2


class UsageError(RartsError):
    """Bad input: an argument, a file, a genotype, a setting. Nothing has been done yet."""

    exit_code = 2


class RunFailed(RartsError):
    """A run that started and had to stop; what was saved before stays intact."""

    exit_code = 1
