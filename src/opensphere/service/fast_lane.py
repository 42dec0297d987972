"""The HTTP server of `sphere server`: uvicorn, with fast lanes for the device hot paths.

Every device checks for updates regularly and attests daily and at boot; those requests are
most of a fleet's traffic. What they cost beyond their own work is the road to it: uvicorn's
request cycle, an asyncio task, the ASGI messages, Starlette's request and response objects,
two socket writes per answer. `FastLaneProtocol` is uvicorn's httptools protocol with two
lanes that skip that road once a request's headers are parsed:

- a no-change update check that `TufServer.cached_answer` answers from this process's caches
  is answered at once, in the parser's callback;
- the attestation challenge and evidence (`DeviceLane`s) are read whole and handed to the
  service's framework-free handler (`AttestationService`), whose answer or problem document
  goes out in one write: the challenge's at once, in the parser's callback (it needs no
  storage), the evidence's from a task.

Every other request, and every one a lane does not take (a check the caches cannot answer, a
body without a Content-Length or over the limit, `Expect: 100-continue`, HTTP/1.0 or
`Connection: close`), takes the ordinary ASGI way.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr

from opensphere.formats.evidence import MAX_EVIDENCE_SIZE
from opensphere.service.attestation import MAX_CHALLENGE_BODY, AttestationService
from opensphere.service.problems import PROBLEM_MEDIA_TYPE, error_problem
from opensphere.service.request_ids import request_id_from
from opensphere.service.updates.serving import TUF_PREFIX

CachedAnswer = Callable[[bytes, list[tuple[bytes, bytes]]], tuple[int, bytes, bytes] | None]
LaneAnswer = Callable[[bytes, list[tuple[bytes, bytes]], str], bytes | Awaitable[bytes]]

CHALLENGE_PATH = b"/v1/device/attestation/challenge"
_JSON_LINE = b"content-type: application/json\r\n"
EVIDENCE_PATH = b"/v1/device/attestation/evidence"


@dataclass(frozen=True, slots=True)
class DeviceLane:
    """A POST whose whole body (at most `limit` bytes) `answer` turns into JSON or a refusal.

    An answer given at once is written at once; an awaitable one is awaited in a task.
    """

    limit: int
    answer: LaneAnswer


def server_config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` (made by `create_app`) with its fast lanes."""
    attestation: AttestationService = app.state.attestation

    def challenge(body: bytes, _: list[tuple[bytes, bytes]], __: str) -> bytes:
        return attestation.challenge(body)

    async def evidence(body: bytes, headers: list[tuple[bytes, bytes]], request_id: str) -> bytes:
        content_type = _header(headers, b"content-type").decode("latin-1")
        return await attestation.evidence(body, content_type, request_id)

    protocol = type(
        "FastLaneProtocol",
        (FastLaneProtocol,),
        {
            "prefix": TUF_PREFIX.encode(),
            "cached_answer": staticmethod(app.state.tuf.cached_answer),
            "lanes": {
                CHALLENGE_PATH: DeviceLane(MAX_CHALLENGE_BODY, challenge),
                EVIDENCE_PATH: DeviceLane(MAX_EVIDENCE_SIZE, evidence),
            },
        },
    )
    return uvicorn.Config(app, http=protocol, **options)


class _Event:
    def set(self) -> None:
        """uvicorn wakes a cycle's reader on a lost connection; a lane has none."""


class _LaneExchange:
    """A device-lane request in flight.

    It takes uvicorn's `cycle` slot while its answer is pending, so a request pipelined
    behind it waits its turn as behind any other, and a shutdown reaches it (`keep_alive`).
    """

    message_event = _Event()

    def __init__(self, lane: DeviceLane, url: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.lane = lane
        self.url = url
        self.headers = headers
        self.body = bytearray()
        self.keep_alive = True
        self.response_complete = False
        self.disconnected = False


class FastLaneProtocol(HttpToolsProtocol):
    """Takes what its lanes can answer out of uvicorn's request cycle (see the module).

    An answer is written only where uvicorn itself would write one at once: HTTP/1.1
    keep-alive, nothing in flight on the connection, no back-pressure. It carries uvicorn's
    default headers (date, server) and the request id, and is access-logged if uvicorn's
    access log is on, as the ASGI way's is.
    """

    prefix: bytes
    cached_answer: CachedAnswer
    lanes: dict[bytes, DeviceLane]
    answered = False
    parsing: _LaneExchange | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.answered = False
        self.parsing = None

    def on_headers_complete(self) -> None:
        self._unset_keepalive_if_required()  # armed by an answered request in the same data
        if (
            (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
            and not self.flow.write_paused
            and self.parser.should_keep_alive()
            and self.parser.get_http_version() == "1.1"
        ):
            method = self.parser.get_method()
            if method == b"GET" and self.url.startswith(self.prefix):
                answer = self.cached_answer(self.url, self.headers)
                if answer is not None:
                    self.answered = True
                    self._write(*answer, request_id_from(self.headers).encode())
                    return
            elif method == b"POST":
                lane = self.lanes.get(self.url)
                if lane is not None and not self.expect_100_continue and _fits(self.headers, lane):
                    self.parsing = _LaneExchange(lane, self.url, self.headers)
                    self.cycle = self.parsing  # type: ignore[assignment]
                    return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.body += body  # bounded: the Content-Length fits the lane's limit
        elif not self.answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is not None:
            self.parsing = None
            self._answer(exchange)
        elif not self.answered:
            super().on_message_complete()
        elif not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _answer(self, exchange: _LaneExchange) -> None:
        request_id = request_id_from(exchange.headers)
        try:
            answer = exchange.lane.answer(bytes(exchange.body), exchange.headers, request_id)
        except Exception as exc:  # every failure is answered, none escapes to uvicorn
            self._finish(exchange, request_id, *_problem(exchange, request_id, exc))
            return
        if isinstance(answer, bytes):
            self._finish(exchange, request_id, 200, _JSON_LINE, answer)
            return
        task = self.loop.create_task(self._answer_later(exchange, request_id, answer))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer_later(
        self, exchange: _LaneExchange, request_id: str, answer: Awaitable[bytes]
    ) -> None:
        try:
            outcome = 200, _JSON_LINE, await answer
        except Exception as exc:  # every failure is answered, none escapes to uvicorn
            outcome = _problem(exchange, request_id, exc)
        self._finish(exchange, request_id, *outcome)

    def _finish(
        self, exchange: _LaneExchange, request_id: str, status: int, lines: bytes, body: bytes
    ) -> None:
        exchange.response_complete = True
        if self.transport.is_closing():
            return
        if not exchange.keep_alive:  # the server is shutting down
            lines += b"connection: close\r\n"
        lines += b"content-length: " + str(len(body)).encode() + b"\r\n"
        self._write(status, lines, body, request_id.encode(), path=exchange.url, method="POST")
        if not exchange.keep_alive:
            self.transport.close()
        self.on_response_complete()  # counts it, resumes reading, starts what was pipelined

    def _write(
        self,
        status: int,
        header_lines: bytes,
        body: bytes,
        request_id: bytes,
        *,
        path: bytes | None = None,
        method: str = "GET",
    ) -> None:
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content += (name, b": ", value, b"\r\n")
        content += (header_lines, b"x-request-id: ", request_id, b"\r\n\r\n", body)
        self.transport.write(b"".join(content))
        if method == "GET":
            self.server_state.total_requests += 1
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/1.1" %d',
                get_client_addr(self.scope),
                method,
                (path or self.url).decode("latin-1"),
                status,
            )


def _fits(headers: list[tuple[bytes, bytes]], lane: DeviceLane) -> bool:
    """A body of declared length within the lane's limit, not chunked."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return False
            length = int(value)
        elif name == b"transfer-encoding":
            return False
    return length is not None and length <= lane.limit


def _problem(exchange: _LaneExchange, request_id: str, exc: Exception) -> tuple[int, bytes, bytes]:
    """The problem document the ASGI way would answer for `exc` (`problems.error_problem`)."""
    status, document, headers = error_problem(
        exc, method="POST", instance=exchange.url.decode("latin-1"), request_id=request_id
    )
    lines = b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n"
    for name, value in (headers or {}).items():
        lines += name.lower().encode() + b": " + value.encode() + b"\r\n"
    body = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return status, lines, body.encode()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key == name:
            return value
    return b""
