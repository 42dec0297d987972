"""The HTTP server of `sphere server`: uvicorn, with a fast lane for no-change update checks.

Every device checks for updates regularly and almost always learns that nothing changed. Once
its credential, registry entry and its tenant's latest `timestamp.json` are in this process's
caches, the answer is a few bytes the service already holds; what it costs is the road to it
(uvicorn's request cycle, an asyncio task, the ASGI messages), several times the answer.
`FastLaneProtocol` is uvicorn's httptools protocol that, once a request's headers are parsed,
asks `TufServer.cached_answer` and writes its answer straight to the connection; every other
request, and every check that the caches cannot answer alone, takes the ordinary ASGI way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr

from opensphere.service.request_ids import request_id_from
from opensphere.service.updates.serving import TUF_PREFIX

CachedAnswer = Callable[[bytes, list[tuple[bytes, bytes]]], tuple[int, bytes, bytes] | None]


def server_config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` (made by `create_app`) with its fast lane."""
    protocol = type(
        "FastLaneProtocol",
        (FastLaneProtocol,),
        {"prefix": TUF_PREFIX.encode(), "cached_answer": staticmethod(app.state.tuf.cached_answer)},
    )
    return uvicorn.Config(app, http=protocol, **options)


class FastLaneProtocol(HttpToolsProtocol):
    """Answers GETs under `prefix` that `cached_answer` can answer, right after their headers.

    The answer is only written when uvicorn itself would write it at once: HTTP/1.1 keep-alive,
    nothing pipelined or in flight on the connection, no back-pressure. The answer carries
    uvicorn's default headers (date, server) and the request id, and is access-logged if
    uvicorn's access log is on, as the ASGI way's is.
    """

    prefix: bytes
    cached_answer: CachedAnswer
    answered = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.answered = False

    def on_headers_complete(self) -> None:
        if (
            self.url.startswith(self.prefix)
            and self.parser.get_method() == b"GET"
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
            and not self.flow.write_paused
            and self.parser.should_keep_alive()
            and self.parser.get_http_version() == "1.1"
        ):
            answer = self.cached_answer(self.url, self.headers)
            if answer is not None:
                self._write(*answer)
                return
        self._unset_keepalive_if_required()  # armed by an answered request in the same data
        super().on_headers_complete()

    def _write(self, status: int, header_lines: bytes, body: bytes) -> None:
        self.answered = True
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content += (name, b": ", value, b"\r\n")
        request_id = request_id_from(self.headers).encode()
        content += (header_lines, b"x-request-id: ", request_id, b"\r\n\r\n", body)
        self.transport.write(b"".join(content))
        self.server_state.total_requests += 1
        if self.access_log:
            self.access_logger.info(
                '%s - "GET %s HTTP/1.1" %d',
                get_client_addr(self.scope),
                self.url.decode("latin-1"),
                status,
            )

    def on_body(self, body: bytes) -> None:
        if not self.answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.answered:
            super().on_message_complete()
        elif not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
