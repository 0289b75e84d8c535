"""ASGI middleware: request body cap, security headers, Server-Timing, one log line per request."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from model.errors import TooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("soundscape.access")


def content_security_policy(basemap_origin: str | None) -> str:
    """The page's CSP: everything from this origin only; tiles may also be data:/blob: URLs."""
    img = "'self' data: blob:" + (f" {basemap_origin}" if basemap_origin else "")
    return (
        f"default-src 'self'; img-src {img}; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


def redoc_content_security_policy() -> str:
    """The CSP of the ReDoc page `/redoc` only (its route sets it): the map page's, relaxed where
    ReDoc's standalone bundle (web/node_modules/redoc) cannot work otherwise. Still no inline
    script, no eval and no other origin:
    - `style-src 'unsafe-inline'`: ReDoc styles itself with styled-components, which writes its
      CSS into <style> elements it adds at run time (refused, ReDoc stops with "error #17");
    - `worker-src blob:`: ReDoc's search index runs in a Web Worker made from a blob: URL of code
      inside its own bundle (so no script beyond 'self' runs).
    Swagger UI (`/docs`) works under the map page's policy and keeps it.
    """
    return (
        "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
        "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    )


# Called with (route template, status) once per request: the metrics' request counter.
RequestObserver = Callable[[str, int], None]


def route_template(scope: Scope) -> str:
    """The matched route's template (`/tiles/{query}/{z}/{x}/{y}.png`), never the raw path: query
    text in paths would make unbounded label values."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)  # no ":path"
    return path if isinstance(path, str) and path else "unmatched"


class ServiceMiddleware:
    """Caps bodies, adds nosniff/CSP/Server-Timing headers, logs and counts each request."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, csp: str, on_request: RequestObserver | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.csp = csp.encode()
        self.on_request = on_request or (lambda route, status: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 0}
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _send_json(send, 413, f"request body larger than {self.max_body} bytes")
            self._log(scope, 413, start)
            self.on_request(route_template(scope), 413)
            return
        received = {"n": 0}

        async def capped_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received["n"] += len(message.get("body", b""))
                if received["n"] > self.max_body:
                    raise TooLargeError(f"request body larger than {self.max_body} bytes")
            return message

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                out = [(k, v) for k, v in message.get("headers", [])]
                names = {k.lower() for k, _ in out}
                out.append((b"x-content-type-options", b"nosniff"))
                out.append((b"referrer-policy", b"same-origin"))
                ctype = dict(out).get(b"content-type", b"")
                # A route's own CSP (the ReDoc page's) stands; every other page gets ours.
                if ctype.startswith(b"text/html") and b"content-security-policy" not in names:
                    out.append((b"content-security-policy", self.csp))
                dur = (time.perf_counter() - start) * 1000
                total = f"total;dur={dur:.2f}".encode()
                if b"server-timing" in names:
                    out = [
                        (k, v + b", " + total if k.lower() == b"server-timing" else v)
                        for k, v in out
                    ]
                else:
                    out.append((b"server-timing", total))
                message = {**message, "headers": out}
            await send(message)

        try:
            await self.app(scope, capped_receive, wrapped_send)
        finally:
            self._log(scope, status["code"] or 500, start)
            self.on_request(route_template(scope), status["code"] or 500)

    @staticmethod
    def _log(scope: Scope, status: int, start: float) -> None:
        client = scope.get("client") or ("-", 0)
        log.info(
            "request",
            extra={
                "fields": {
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "ms": round((time.perf_counter() - start) * 1000, 2),
                    "client": client[0],
                }
            },
        )


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
