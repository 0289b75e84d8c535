"""The status table: one HTTP status per error class, one JSON shape for every error.

Errors are the classes of `model.errors`; a route raises them and never builds a status itself
(as titiler's errors.py does). Every error body is `{"detail": ...}`; a `RetryLaterError` adds
`Retry-After`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.errors import (
    BusyError,
    InputError,
    NotFoundError,
    RateLimitedError,
    RetryLaterError,
    SoundscapeError,
    TooLargeError,
    UnsupportedMediaError,
)

log = logging.getLogger("soundscape.errors")


class ErrorBody(BaseModel):
    """Every error answer: one line saying what is wrong."""

    detail: str


# Most specific first: the first class an error is an instance of gives its status.
STATUS: tuple[tuple[type[SoundscapeError], int], ...] = (
    (NotFoundError, 404),
    (TooLargeError, 413),
    (UnsupportedMediaError, 415),
    (RateLimitedError, 429),
    (BusyError, 503),
    (InputError, 422),
    (SoundscapeError, 500),
)
DESCRIPTIONS = {
    400: "malformed Range header",
    404: "not found: an unknown query id, or a tile/level outside the store",
    413: "too large: the body, the audio or the region exceeds a limit (named in detail)",
    415: "unsupported media type",
    416: "range not satisfiable: the Range header lies beyond the file",
    422: "invalid input (detail says which)",
    429: "rate limited: retry after Retry-After seconds",
    503: "busy: retry after Retry-After seconds",
}


def status_of(exc: SoundscapeError) -> int:
    """The HTTP status of an error."""
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(exc: SoundscapeError) -> JSONResponse:
    """`{"detail": message}` with the error's status (and Retry-After when it has one)."""
    status = status_of(exc)
    headers = {}
    if isinstance(exc, RetryLaterError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, TooLargeError):
        headers["Connection"] = "close"  # the rest of an oversized body is not read
    if status >= 500:
        log.error("request failed: %s", exc, exc_info=exc)
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers or None)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries of error statuses a route can answer with."""
    return {s: {"description": DESCRIPTIONS[s], "model": ErrorBody} for s in statuses}


def validation_message(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic/FastAPI validation errors as one line: `where: what; where: what`."""
    parts = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        where = f"{loc[0]} {'.'.join(loc[1:])}".strip() if loc else "request"
        parts.append(f"{where}: {' '.join(str(e.get('msg', 'invalid')).split())}")
    return "; ".join(parts) or "invalid request"


def add_error_handlers(app: FastAPI, on_error: Any = None) -> None:
    """Answer every SoundscapeError through the status table (`on_error(exc)` sees each), and
    request validation errors as 422 in the same one-line shape."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SoundscapeError)
        if on_error is not None:
            on_error(exc)
        return error_response(exc)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(InputError(validation_message(exc.errors())))

    async def framework(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI and Starlette answer a body they cannot parse (bad JSON, a multipart body
        # with too many fields) with 400: that is invalid input, 422 like every other.
        assert isinstance(exc, StarletteHTTPException)
        detail = " ".join(str(exc.detail).split())
        if exc.status_code == 400:
            return error_response(InputError(f"invalid request body: {detail}"))
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(SoundscapeError, handle)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, framework)
