"""One error hierarchy: what an error means for a caller follows from its class alone."""

from __future__ import annotations

import errno

import pytest

from model import errors as E


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (E.InputError("bad"), 2),
        (E.UnknownQueryError("txt-" + "0" * 24), 2),
        (E.StoreMismatchError("other model"), 2),
        (E.AudioTooLargeError("too long"), 2),
        (E.MissingResourceError("run soundscape demo first"), 2),
        (E.ConfigError("unknown config"), 2),
        (ValueError("a library's bad value"), 2),
        (KeyError("name"), 2),
        (FileNotFoundError(errno.ENOENT, "missing", "x.tif"), 2),
        (E.SoundscapeError("broken"), 1),
        (E.StorageAccessError("access denied"), 1),
        (E.BusyError(), 1),
        (OSError(errno.ENOSPC, "No space left on device"), 1),
        (RuntimeError("?"), 1),
    ],
)
def test_exit_codes(exc, code):
    assert E.exit_code(exc) == code


def test_every_error_class_is_a_soundscape_error_and_input_errors_are_value_errors():
    classes = [c for c in vars(E).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert len(classes) >= 18
    assert all(issubclass(c, E.SoundscapeError) for c in classes)
    for c in classes:
        assert issubclass(c, ValueError) == issubclass(c, E.InputError), c


def test_messages_are_one_line_and_one_wording():
    assert E.one_line(KeyError("missing 'x'")) == "missing 'x'"
    assert E.one_line(ValueError("two\nlines  here")) == "two lines here"
    assert E.one_line(RuntimeError()) == "RuntimeError"
    qid = "aud-" + "1" * 24
    assert str(E.UnknownQueryError(qid)) == (
        f"unknown query id {qid!r}: register the query with POST /queries"
    )
    assert E.RateLimitedError(3).retry_after_s == 3 and isinstance(
        E.RateLimitedError(3), E.InputError
    )
