"""One small error hierarchy, and the one place that turns errors into user messages.

Every error qabot raises on purpose is a QabotError whose str() is already a sentence a user can act on.
InputError marks the user's own input as the cause (the CLI exits 2 for those)."""

from __future__ import annotations


class QabotError(Exception):
    """Base of every error qabot raises deliberately; the message is meant for the user."""


class InputError(QabotError):
    """The user's own input is at fault: bad path, unsupported file, bad URL, bad question."""


class UnsupportedInput(InputError):
    """A file type or content qabot cannot read (binary, unknown extension, invalid UTF-8)."""


class EmptyDocument(InputError):
    """The input held no article text once boilerplate was removed."""


class FetchError(InputError):
    """A URL could not be fetched: refused address, timeout, HTTP error, too large."""


class BadQuestion(InputError):
    """The question is empty, too long, or has nothing to search for."""


class IndexMismatch(QabotError):
    """The index on disk was built with another model, dimension or schema than the one asked for."""


class IndexBusy(QabotError):
    """Another process holds the writer lock of this index."""


class IndexCorrupt(QabotError):
    """The index directory cannot be read and cannot be rebuilt from its database."""


def user_message(exc: BaseException) -> str:
    """The single translation from an exception to what a user is shown (CLI and Discord alike)."""
    if isinstance(exc, QabotError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "Interrupted."
    # Anything else is a bug in qabot, not the user's doing: say so without a traceback wall.
    return f"Internal error ({type(exc).__name__}): {exc}. Please report this with the command you ran."


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, InputError):
        return 2
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1
