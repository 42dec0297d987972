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
  goes out in one write, at once when the handler needs no waiting (`DeviceLane`).

Every other request, and every one a lane does not take (a check the caches cannot answer, a
body without a Content-Length or over the limit, `Expect: 100-continue`, HTTP/1.0 or
`Connection: close`), takes the ordinary ASGI way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from opensphere.formats.evidence import MAX_EVIDENCE_SIZE
from opensphere.service.attestation import MAX_CHALLENGE_BODY, AttestationService
from opensphere.service.problems import PROBLEM_MEDIA_TYPE, error_problem
from opensphere.service.request_ids import request_id_for
from opensphere.service.updates.serving import TUF_PREFIX

Fields = Mapping[bytes, bytes]
"""A request's header fields by lower-case name; the first of a repeated name."""
CachedAnswer = Callable[[bytes, Fields], tuple[int, bytes, bytes] | None]
LaneAnswer = Callable[[bytes, Fields, str], bytes | Coroutine[Any, Any, bytes]]

CHALLENGE_PATH = b"/v1/device/attestation/challenge"
EVIDENCE_PATH = b"/v1/device/attestation/evidence"
_JSON_LINE = b"content-type: application/json\r\n"
_TIMER_SLACK = 0.005
"""s: a keep-alive timer firing this early counts as on time (timers are not exact)."""


@dataclass(frozen=True, slots=True)
class DeviceLane:
    """A POST whose whole body (at most `limit` bytes) `answer` turns into JSON or a refusal.

    `answer` runs at once, in the parser's callback: it answers JSON (the challenge) or a
    coroutine, which runs at once too, up to its end or its first wait (as Python 3.12's
    eager tasks run one): what needs no waiting (on SQLite, the evidence) is written at
    once, the rest is finished by a task. Until its first wait the coroutine runs outside
    any task, so it must not need one there (anyio's `to_thread` does;
    `HotTransactions.in_thread` does not).
    """

    limit: int
    answer: LaneAnswer


def server_config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` (made by `create_app`) with its fast lanes."""
    attestation: AttestationService = app.state.attestation

    def challenge(body: bytes, _: Fields, __: str) -> bytes:
        return attestation.challenge(body)

    def evidence(body: bytes, fields: Fields, request_id: str) -> Coroutine[Any, Any, bytes]:
        content_type = fields.get(b"content-type", b"").decode("latin-1")
        return attestation.evidence(body, content_type, request_id)

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

    __slots__ = ("body", "disconnected", "fields", "keep_alive", "lane", "response_complete", "url")
    message_event = _Event()

    def __init__(self, lane: DeviceLane, url: bytes, fields: Fields) -> None:
        self.lane = lane
        self.url = url
        self.fields = fields
        self.body = bytearray()
        self.keep_alive = True
        self.response_complete = False
        self.disconnected = False


class _Rest:
    """The rest of a coroutine that ran up to its first wait: awaiting this continues it, as
    `await` would have (what the task sends or throws in, the coroutine gets)."""

    def __init__(self, coroutine: Coroutine[Any, Any, bytes], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, bytes]:
        coroutine, waiting_on = self._coroutine, self._waiting_on
        while True:
            try:
                yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # a cancellation, thrown in by the task
                try:
                    waiting_on = coroutine.throw(exc)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]
            else:
                try:
                    waiting_on = coroutine.send(None)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]


class FastLaneProtocol(HttpToolsProtocol):
    """Takes what its lanes can answer out of uvicorn's request cycle (see the module).

    An answer is written only where uvicorn itself would write one at once: HTTP/1.1
    keep-alive, nothing in flight on the connection, no back-pressure. It carries uvicorn's
    default headers (date, server) and the request id, and is access-logged if uvicorn's
    access log is on, as the ASGI way's is. A request's ASGI scope is built only when it
    goes the ASGI way.
    """

    prefix: bytes
    cached_answer: CachedAnswer
    lanes: dict[bytes, DeviceLane]
    answered = False
    parsing: _LaneExchange | None = None
    _idle_since: float | None = None

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
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
                fields = dict(reversed(self.headers))
                answer = self.cached_answer(self.url, fields)
                if answer is not None:
                    self.answered = True
                    request_id = request_id_for(fields.get(b"x-request-id"))
                    self._write(*answer, request_id.encode())
                    return
            elif method == b"POST":
                lane = self.lanes.get(self.url)
                if lane is not None and not self.expect_100_continue:
                    fields = dict(reversed(self.headers))
                    if _fits(fields, lane):
                        self.parsing = _LaneExchange(lane, self.url, fields)
                        self.cycle = self.parsing  # type: ignore[assignment]
                        return
        self._begin_scope()
        super().on_headers_complete()

    def _begin_scope(self) -> None:
        """The request's ASGI scope, as uvicorn's `on_message_begin` makes it."""
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect_100_continue
        self.headers = self.scope["headers"] = headers

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
            self._idle_from_now()

    # The keep-alive timeout, kept lazily: uvicorn cancels its timer when a request arrives
    # and arms a new one after each answer, which cost more than a lane's own work. Here the
    # timer stays armed across requests and, when it fires, closes the connection only if it
    # has been idle for the whole timeout since its last answer; otherwise it looks again then.

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # a request is arriving: busy until it is answered

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_from_now()

    def _idle_from_now(self) -> None:
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_expired
            )

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # a request is in flight; its answer arms the timer again
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > _TIMER_SLACK:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_expired)
        else:
            self.timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _answer(self, exchange: _LaneExchange) -> None:
        request_id = request_id_for(exchange.fields.get(b"x-request-id"))
        try:
            answer = exchange.lane.answer(bytes(exchange.body), exchange.fields, request_id)
            if not isinstance(answer, bytes):
                waiting_on = answer.send(None)  # up to its end (StopIteration) or first wait
                rest = _Rest(answer, waiting_on)
                task = self.loop.create_task(self._answer_later(exchange, request_id, rest))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        except StopIteration as finished:
            answer = finished.value
        except Exception as exc:  # every failure is answered, none escapes to uvicorn
            self._finish(exchange, request_id, *_problem(exchange, request_id, exc))
            return
        self._finish(exchange, request_id, 200, _JSON_LINE, answer)

    async def _answer_later(self, exchange: _LaneExchange, request_id: str, rest: _Rest) -> None:
        try:
            outcome = 200, _JSON_LINE, await rest
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
        lines += b"content-length: %d\r\n" % len(body)
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
        self.transport.write(
            b"%s%s%sx-request-id: %s\r\n\r\n%s"
            % (
                STATUS_LINE[status],
                _default_lines(self.server_state.default_headers),
                header_lines,
                request_id,
                body,
            )
        )
        if method == "GET":
            self.server_state.total_requests += 1
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/1.1" %d',
                f"{self.client[0]}:{self.client[1]}" if self.client else "",
                method,
                (path or self.url).decode("latin-1"),
                status,
            )


class _DefaultLines:
    """uvicorn's default header lines (date, server), joined once per list it makes (its
    clock replaces the list every second)."""

    def __init__(self) -> None:
        self._joined: tuple[object, bytes] = (None, b"")

    def __call__(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        if self._joined[0] is not default_headers:
            lines = b"".join(name + b": " + value + b"\r\n" for name, value in default_headers)
            self._joined = (default_headers, lines)
        return self._joined[1]


_default_lines = _DefaultLines()


def _fits(fields: Fields, lane: DeviceLane) -> bool:
    """A body of declared length within the lane's limit, not chunked.

    httptools has refused a repeated or malformed Content-Length, and one beside a
    Transfer-Encoding, before the headers are complete.
    """
    length = fields.get(b"content-length")
    return (
        length is not None
        and b"transfer-encoding" not in fields
        and length.isdigit()
        and int(length) <= lane.limit
    )


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
