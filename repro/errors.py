"""The error type for bad user input.

`ConfigError` means "the user asked for something that is not allowed": the command line
prints its message as one line, `error: <message>`, and exits with code 2, before anything
compiles. Its message names the setting and what is allowed. Every other exception is a bug
or an environment failure and keeps its traceback (exit code 1).

It subclasses `ValueError` so that library callers who catch `ValueError` keep working.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input: one line naming the setting, the value and what is allowed."""
