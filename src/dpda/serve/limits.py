"""An ASGI middleware that refuses request bodies larger than a limit (413), before they fill the disk.

A ``Content-Length`` above the limit is refused before any byte is read; a
body without one (chunked) is counted as it arrives and the request is
refused as soon as it passes the limit.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Dict

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Wraps an ASGI app; HTTP requests whose body exceeds ``max_bytes`` get 413 ``{"error": ...}``."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int, slack: int = 0) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.limit = int(max_bytes) + int(slack)  # slack: room for the multipart framing around a file

    def _message(self) -> str:
        return f"the upload is larger than this server accepts ({self.max_bytes / 1e6:.3g} MB)"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": self._message()}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._refuse(send)
                    return
        seen = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            # the app may turn the interrupted body into its own error reply (FastAPI: 400 "error
            # parsing the body"); that reply is replaced by the 413
            nonlocal started
            if exceeded:
                if not started:
                    started = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)
