"""The status table: one status per error class, one JSON shape, validation errors included."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from model import errors as E
from server.errors import add_error_handlers, status_of, validation_message


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (E.UnknownQueryError("txt-" + "0" * 24), 404),
        (E.OutOfRangeError("zoom 30"), 404),
        (E.TooLargeError("body"), 413),
        (E.AudioTooLargeError("70 s"), 413),
        (E.AudioFormatError("not audio"), 415),
        (E.UnsupportedMediaError("text/plain"), 415),
        (E.RateLimitedError(2), 429),
        (E.BusyError(), 503),
        (E.AudioError("corrupt"), 422),
        (E.InputError("bad"), 422),
        (E.StoreError("unreadable"), 422),
        (E.SoundscapeError("bug"), 500),
        (E.StorageAccessError("denied"), 500),
    ],
)
def test_status_table(exc, status):
    assert status_of(exc) == status


def test_handlers_answer_one_json_shape_with_retry_after():
    app = FastAPI()
    seen = []
    add_error_handlers(app, seen.append)

    @app.get("/busy")
    async def busy() -> None:
        raise E.BusyError(4)

    @app.get("/n/{k}")
    async def typed(k: int) -> dict:
        return {"k": k}

    with TestClient(app) as c:
        r = c.get("/busy")
        assert r.status_code == 503 and r.headers["retry-after"] == "4"
        assert r.json() == {"detail": "the service is busy; retry shortly"}
        r = c.get("/n/x")
        assert r.status_code == 422
        assert r.json() == {"detail": "path k: Input should be a valid integer, unable to parse "
                            "string as an integer"}  # fmt: skip
    assert len(seen) == 1 and isinstance(seen[0], E.BusyError)


def test_validation_message_is_one_line():
    text = validation_message(
        [{"loc": ("query", "month"), "msg": "too big"}, {"loc": ("body",), "msg": "x\ny"}]
    )
    assert text == "query month: too big; body: x y"
    assert validation_message([]) == "invalid request"
