"""The base class of the errors that are the user's to fix, which the command line reports in one line.

Kept free of torch (and of every other module of the package) so that the command line can tell a user's error
from a bug without importing torch just to report it.

    >>> class DownloadError(UserError): ...
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or data, told in one line, no traceback: the message says what is wrong
    and what to do. Anything else that escapes a command is a bug and keeps its traceback."""
