"""One hierarchy for every error this project raises on purpose.

Each error's message is one line a user can act on. What an error means for a caller is decided
by its class alone, in two tables: the HTTP status (`server/errors.py`) and the command-line exit
code (`exit_code` here: 2 for bad input or usage, 1 for a failure at run time). It lives in the
lowest layer so that the model, the store and the server raise the same classes
(docs/ARCHITECTURE.md, "Errors").
"""

from __future__ import annotations


class SoundscapeError(Exception):
    """Base class: a failure at run time that is not the caller's fault (exit 1, HTTP 500)."""

    exit_code = 1


class InputError(SoundscapeError, ValueError):
    """Bad input: a request, an argument or a file that cannot be used as given (exit 2, 422)."""

    exit_code = 2


class NotFoundError(InputError):
    """The input names something that does not exist (HTTP 404)."""


class OutOfRangeError(NotFoundError):
    """A tile, level or zoom outside what the store serves."""


class UnknownQueryError(NotFoundError):
    """A query id that was never registered (or has expired from every cache)."""

    def __init__(self, query_id: str) -> None:
        super().__init__(f"unknown query id {query_id!r}: register the query with POST /queries")
        self.query_id = query_id


class TooLargeError(InputError):
    """An input beyond a size limit (HTTP 413); the message names the limit."""


class UnsupportedMediaError(InputError):
    """Content of a type that is not accepted (HTTP 415)."""


class RetryLaterError(SoundscapeError):
    """The service cannot take the request now; the caller may retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BusyError(RetryLaterError):
    """Too much work is queued (HTTP 503 with Retry-After)."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("the service is busy; retry shortly", retry_after_s)


class RateLimitedError(RetryLaterError, InputError):
    """One client sent too many requests (HTTP 429 with Retry-After)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many requests; slow down", retry_after_s)


class ConfigError(InputError):
    """A model config name or file that cannot be used."""


class CheckpointError(InputError):
    """A checkpoint file that cannot be read or does not fit."""


class StoreError(InputError):
    """An embedding store that cannot be opened or written as asked."""


class StoreMismatchError(StoreError):
    """A store built for another model, schema, region or level set."""


class ImageryError(InputError):
    """An imagery source that cannot be opened or read."""


class AudioError(InputError):
    """An audio file that is not acceptable (corrupt, empty, too many channels...)."""


class AudioTooLargeError(AudioError, TooLargeError):
    """Audio longer than the limit."""


class AudioFormatError(AudioError, UnsupportedMediaError):
    """Bytes that are not WAV, FLAC, OGG or MP3."""


class MissingResourceError(InputError, FileNotFoundError):
    """A file the command needs that is not there yet (the message says how to make it)."""


class StorageAccessError(SoundscapeError, OSError):
    """Object storage that refused access or could not be reached."""


def exit_code(exc: BaseException) -> int:
    """The command-line exit code of an error: 2 for bad input or usage, 1 otherwise."""
    if isinstance(exc, SoundscapeError):
        return exc.exit_code
    # Errors from libraries: a value or a missing file the user gave is input; the rest (a full
    # disk, a lost connection) is a failure at run time.
    if isinstance(exc, ValueError | KeyError | FileNotFoundError | NotADirectoryError):
        return 2
    return 1


def one_line(exc: BaseException) -> str:
    """The error's message on one line (KeyError's repr quotes are dropped)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = " ".join(str(message).split())
    return text or type(exc).__name__
