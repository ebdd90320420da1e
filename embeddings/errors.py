"""One small error hierarchy, and the one place that turns errors into user messages.

Every error qabot raises on purpose is a QabotError whose str() is already a sentence a user can act on.
InputError marks the user's own input as the cause (the CLI exits 2 for those)."""

from __future__ import annotations

import errno


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


class StorageError(QabotError):
    """The index's storage refuses to be written: the disk is full or the medium is read-only."""


class DiskFull(StorageError):
    """No space left where the index lives (ENOSPC, EDQUOT, SQLITE_FULL)."""

    def __init__(self, where: str = "") -> None:
        place = f"the disk holding {where}" if where else "the disk"
        super().__init__(f"{place[0].upper()}{place[1:]} is full: free some space and try again "
                         "(nothing already committed is lost).")


class ReadOnlyIndex(StorageError):
    """The index directory (or its medium) cannot be written: questions work, changes do not."""

    def __init__(self, where: str = "", reason: str = "read-only") -> None:
        super().__init__(f"The index at {where or 'QABOT_HOME'} cannot be written ({reason}): qabot can answer "
                         "questions from it but not change it; ingest into a writable copy or another QABOT_HOME.")


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(exc: BaseException, where: str = "") -> StorageError | None:
    """The StorageError an OSError or sqlite3 error stands for (None: it is something else)."""
    if isinstance(exc, StorageError):
        return exc
    code = getattr(exc, "errno", None)
    if code in _FULL:
        return DiskFull(where)
    if code in _READ_ONLY:
        return ReadOnlyIndex(where, getattr(exc, "strerror", None) or "permission denied")
    text = str(exc).lower()
    if "database or disk is full" in text:
        return DiskFull(where)
    if "readonly database" in text or "read-only file system" in text:
        return ReadOnlyIndex(where)
    return None


def user_message(exc: BaseException) -> str:
    """The single translation from an exception to what a user is shown (CLI and Discord alike)."""
    if isinstance(exc, QabotError):
        return str(exc)
    storage = storage_error(exc)
    if storage is not None:  # an OSError no layer translated: still one line saying what is wrong
        return str(storage)
    if isinstance(exc, KeyboardInterrupt):
        return "Interrupted."
    # Anything else is a bug in qabot, not the user's doing: say so without a traceback wall.
    return f"Internal error ({type(exc).__name__}): {exc}. Please report this with the command you ran."


def exit_code(exc: BaseException) -> int:
    """2: the user's input; 130: interrupted; 1: everything else (a full disk or read-only index too)."""
    if isinstance(exc, InputError):
        return 2
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1
